package api

import (
	"net/http"
	"time"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/forgettable"
)

// actor names the principal of a request in the erasure ledger, the
// holds and the policies: its token id, never the secret.
func actor(r *http.Request) string {
	p, _ := principalFrom(r.Context())
	return "token:" + p.TokenID
}

func (s *Server) erase(w http.ResponseWriter, r *http.Request) {
	// PostgreSQL keeps microseconds: a completion stored since this
	// instant is not before start.
	start := time.Now().Truncate(time.Microsecond)
	subject, ok := s.param(w, r, "subject")
	if !ok {
		return
	}
	req, ok := decodeBody[wire.EraseRequest](s, w, r, true)
	if !ok {
		return
	}
	e, err := s.opts.Subjects.Forget(r.Context(), subject, forgettable.ErasureRequest{
		Actor: actor(r), RequestID: requestID(r), Reason: req.Reason, LegalBasis: req.LegalBasis})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Count the erasures this request completed: a first erase, or a retry
	// that finished a pending one; not a repeat that returns an earlier
	// receipt (whatever its request id: clients resend their ticket number).
	if e.Completion != nil && !e.Completion.CompletedAt.Before(start) {
		s.metrics.erasures.Inc()
	}
	writeJSON(w, http.StatusOK, ErasureSummary(e, time.Now()))
}

func (s *Server) erasure(w http.ResponseWriter, r *http.Request) {
	subject, ok := s.param(w, r, "subject")
	if !ok {
		return
	}
	e, ok, err := s.opts.Subjects.Erasure(r.Context(), subject)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !ok {
		s.problem(w, r, http.StatusNotFound, "not-erased", "This data subject has not been erased.")
		return
	}
	// The same document as GET /v1/erasures/{erasureId}.
	after, limit, err := receiptQuery(r.URL.Query())
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	out, err := s.receipt(r.Context(), e.ID, after, limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) hold(held bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		subject, ok := s.param(w, r, "subject")
		if !ok {
			return
		}
		req, ok := decodeBody[wire.HoldRequest](s, w, r, true)
		if !ok {
			return
		}
		if err := s.opts.Subjects.SetHold(r.Context(), subject, held, actor(r), req.Reason); err != nil {
			s.fail(w, r, err)
			return
		}
		ref, err := s.opts.Subjects.SubjectRef(r.Context(), subject)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, wire.Hold{SubjectRef: string(ref), Held: held})
	}
}

func toWirePolicy(p forgettable.Policy) wire.Policy {
	return wire.Policy{EventType: p.EventType, Paths: p.Paths, UpdatedAt: p.UpdatedAt, UpdatedBy: p.UpdatedBy}
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := s.opts.Policies.ListPolicies(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]wire.Policy, len(ps))
	for i, p := range ps {
		out[i] = toWirePolicy(p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": out})
}

// policyParam is the event type of a policy route that reads or deletes
// a policy. An event type PostgreSQL could not store has no policy: 404.
func (s *Server) policyParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	eventType, ok := s.param(w, r, "eventType")
	if ok && !isStorableText(eventType) {
		s.fail(w, r, forgettable.ErrPolicyNotFound)
		return "", false
	}
	return eventType, ok
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	eventType, ok := s.policyParam(w, r)
	if !ok {
		return
	}
	p, err := s.opts.Policies.Policy(r.Context(), eventType)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWirePolicy(p))
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	eventType, ok := s.param(w, r, "eventType")
	if !ok {
		return
	}
	req, ok := decodeBody[wire.PolicyRequest](s, w, r, false)
	if !ok {
		return
	}
	p := forgettable.Policy{EventType: eventType, Paths: req.Paths, UpdatedAt: time.Now().UTC(), UpdatedBy: actor(r)}
	if err := s.opts.Policies.PutPolicy(r.Context(), p, requestID(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	stored, err := s.opts.Policies.Policy(r.Context(), p.EventType)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toWirePolicy(stored))
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	eventType, ok := s.policyParam(w, r)
	if !ok {
		return
	}
	if err := s.opts.Policies.DeletePolicy(r.Context(), eventType, actor(r), requestID(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody[wire.TokenRequest](s, w, r, false)
	if !ok {
		return
	}
	secret, t, err := GenerateToken(req.Name, req.Roles, actor(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	t.RequestID = requestID(r)
	stored, err := s.opts.Tokens.CreateToken(r.Context(), t)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	stored.Secret = secret
	s.log.Info("token created", "token_id", stored.ID, "roles", stored.Roles, "by", actor(r), "request_id", requestID(r))
	writeJSON(w, http.StatusCreated, stored)
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	ts, err := s.opts.Tokens.ListTokens(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if ts == nil {
		ts = []wire.Token{}
	}
	writeJSON(w, http.StatusOK, wire.TokenList{Tokens: ts})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id, ok := s.param(w, r, "tokenId")
	if !ok {
		return
	}
	if err := s.opts.Tokens.RevokeToken(r.Context(), id, actor(r), requestID(r)); err != nil {
		s.fail(w, r, err)
		return
	}
	s.auth.dropToken(id)
	s.log.Info("token revoked", "token_id", id, "by", actor(r), "request_id", requestID(r))
	w.WriteHeader(http.StatusNoContent)
}
