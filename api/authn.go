package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

type principalKey struct{}

// authenticated is a request's principal and the hash of the token it
// came with (subscriptions check it again while they run).
type authenticated struct {
	p    Principal
	hash [32]byte
}

func principalFrom(ctx context.Context) (Principal, bool) {
	a, ok := ctx.Value(principalKey{}).(authenticated)
	return a.p, ok
}

// tokenHashFrom returns the hash of the request's token.
func tokenHashFrom(ctx context.Context) ([32]byte, bool) {
	a, ok := ctx.Value(principalKey{}).(authenticated)
	return a.hash, ok
}

// authenticate resolves the bearer token of every /v1 request: 401 without
// one or with an unknown or revoked one.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(h, " ")
		if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="lethe"`)
			s.problem(w, r, http.StatusUnauthorized, "unauthenticated", "Send a token: Authorization: Bearer <token>.")
			return
		}
		hash := HashToken(strings.TrimSpace(token))
		p, err := s.principal(r.Context(), hash)
		switch {
		case errors.Is(err, ErrUnauthenticated):
			w.Header().Set("WWW-Authenticate", `Bearer realm="lethe", error="invalid_token"`)
			s.problem(w, r, http.StatusUnauthorized, "unauthenticated", "The token is unknown or revoked.")
			return
		case err != nil:
			s.fail(w, r, err)
			return
		}
		if info := infoOf(r); info != nil {
			info.tokenID = p.TokenID // for observe's log line
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, authenticated{p: p, hash: hash})))
	})
}

func (s *Server) principal(ctx context.Context, hash [32]byte) (Principal, error) {
	if s.bootstrap.matches(hash) {
		return Principal{TokenID: BootstrapTokenID, Name: "LETHE_ADMIN_TOKEN", Roles: []string{"admin"}}, nil
	}
	if p, ok := s.auth.get(hash); ok {
		return p, nil
	}
	if s.opts.Tokens == nil {
		return Principal{}, ErrUnauthenticated
	}
	gen := s.auth.generation()
	p, err := s.opts.Tokens.Authenticate(ctx, hash)
	if err != nil {
		return Principal{}, err
	}
	s.auth.put(hash, p, gen)
	return p, nil
}

// require lets a request through if its principal holds one of roles.
func (s *Server) require(roles ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := principalFrom(r.Context())
			for _, role := range roles {
				if p.Has(role) {
					next.ServeHTTP(w, r)
					return
				}
			}
			s.problem(w, r, http.StatusForbidden, "forbidden", "This route needs the role "+strings.Join(roles, " or ")+".")
		})
	}
}

// authCache remembers verified tokens for a short time, so that a request
// costs no token lookup; bounded, and cleared of a token when it is
// revoked.
type authCache struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[32]byte]authEntry
	// gen counts revocations: a lookup that started before one is not
	// cached (it may have read the token before it was revoked).
	gen uint64
}

type authEntry struct {
	p       Principal
	expires time.Time
}

func newAuthCache(ttl time.Duration, max int) *authCache {
	return &authCache{ttl: ttl, max: max, entries: map[[32]byte]authEntry{}}
}

func (c *authCache) get(hash [32]byte) (Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || time.Now().After(e.expires) {
		return Principal{}, false
	}
	return e.p, true
}

func (c *authCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches a lookup that started at generation gen, unless a
// revocation came in since.
func (c *authCache) put(hash [32]byte, p Principal, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.entries) >= c.max {
		now := time.Now()
		for k, e := range c.entries {
			if now.After(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[hash] = authEntry{p: p, expires: time.Now().Add(c.ttl)}
}

// dropToken forgets a token's cached authentication; "" forgets all (the
// revocation listener reconnected and may have missed announcements).
func (c *authCache) dropToken(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if id == "" {
		clear(c.entries)
		return
	}
	for k, e := range c.entries {
		if e.p.TokenID == id {
			delete(c.entries, k)
		}
	}
}
