package forgettable

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/lethe-store/lethe/eventstore"
)

type policyEntry struct {
	paths   []pointer // nil: no policy
	fetched time.Time
}

// PolicyChanged drops an event type's cached policy ("" drops all). Wire it
// to the change announcements of every process.
func (s *Store) PolicyChanged(eventType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if eventType == "" {
		s.policyCache = map[string]policyEntry{}
		return
	}
	delete(s.policyCache, eventType)
}

func (s *Store) policyPaths(ctx context.Context, eventType string) ([]pointer, error) {
	s.mu.Lock()
	e, ok := s.policyCache[eventType]
	s.mu.Unlock()
	if ok && time.Since(e.fetched) < s.opts.PolicyTTL {
		return e.paths, nil
	}
	p, err := s.policies.Policy(ctx, eventType)
	var paths []pointer
	switch {
	case errors.Is(err, ErrPolicyNotFound):
	case err != nil:
		return nil, err
	default:
		for _, raw := range p.Paths {
			ptr, err := parsePointer(raw)
			if err != nil {
				return nil, fmt.Errorf("policy for %s: %w", eventType, err)
			}
			paths = append(paths, ptr)
		}
	}
	s.mu.Lock()
	s.policyCache[eventType] = policyEntry{paths: paths, fetched: time.Now()}
	s.mu.Unlock()
	return paths, nil
}

// ValidatePolicy checks a protection policy: an event type as events may
// have (printable ASCII without spaces, at most
// eventstore.MaxEventTypeLength bytes), at least one path, valid JSON
// Pointers without NUL characters that do not overlap. Returns an error
// wrapping ErrInvalidDeclaration.
func ValidatePolicy(p Policy) error {
	if p.EventType == "" || len(p.Paths) == 0 {
		return fmt.Errorf("%w: a policy needs an event type and at least one path", ErrInvalidDeclaration)
	}
	if len(p.EventType) > eventstore.MaxEventTypeLength {
		return fmt.Errorf("%w: event type longer than %d bytes", ErrInvalidDeclaration, eventstore.MaxEventTypeLength)
	}
	for i := 0; i < len(p.EventType); i++ {
		if c := p.EventType[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("%w: event type must be printable ASCII without spaces", ErrInvalidDeclaration)
		}
	}
	var ptrs []pointer
	for _, raw := range p.Paths {
		if strings.IndexByte(raw, 0) >= 0 {
			return fmt.Errorf("%w: a path holds a NUL character (\\u0000)", ErrInvalidDeclaration)
		}
		ptr, err := parsePointer(raw)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidDeclaration, err)
		}
		ptrs = append(ptrs, ptr)
	}
	return checkOverlaps(ptrs)
}

// PutPolicy validates and stores a protection policy, changed by
// p.UpdatedBy in the request requestID (may be empty): the audit trail
// records both.
func (s *Store) PutPolicy(ctx context.Context, p Policy, requestID string) error {
	if err := ValidatePolicy(p); err != nil {
		return err
	}
	if err := s.policies.PutPolicy(ctx, p, requestID); err != nil {
		return err
	}
	s.PolicyChanged(p.EventType)
	return nil
}

// DeletePolicy removes a protection policy; actor and requestID (may be
// empty) go to the audit trail.
func (s *Store) DeletePolicy(ctx context.Context, eventType, actor, requestID string) error {
	if err := s.policies.DeletePolicy(ctx, eventType, actor, requestID); err != nil {
		return err
	}
	s.PolicyChanged(eventType)
	return nil
}

// checkOverlaps refuses paths of which one is another or inside another:
// a field is sealed once, whole. Linear in the paths' tokens: each path's
// prefixes are looked up in a set.
func checkOverlaps(ptrs []pointer) error {
	seen := make(map[string]int, len(ptrs))
	for i, p := range ptrs {
		k := p.String()
		if j, dup := seen[k]; dup {
			return fmt.Errorf("%w: paths %s and %s overlap", ErrInvalidDeclaration, ptrs[j], p)
		}
		seen[k] = i
	}
	for _, p := range ptrs {
		var b strings.Builder
		for _, t := range p[:len(p)-1] {
			b.WriteByte('/')
			b.WriteString(escapeToken(t))
			if j, ok := seen[b.String()]; ok {
				return fmt.Errorf("%w: paths %s and %s overlap", ErrInvalidDeclaration, ptrs[j], p)
			}
		}
	}
	return nil
}

// Policy returns an event type's protection policy, or ErrPolicyNotFound.
func (s *Store) Policy(ctx context.Context, eventType string) (Policy, error) {
	return s.policies.Policy(ctx, eventType)
}

// ListPolicies returns every protection policy, by event type.
func (s *Store) ListPolicies(ctx context.Context) ([]Policy, error) {
	return s.policies.ListPolicies(ctx)
}
