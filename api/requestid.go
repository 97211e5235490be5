package api

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/go-chi/chi/v5/middleware"
)

// maxRequestIDLength bounds a client's X-Request-Id.
const maxRequestIDLength = 128

// validRequestID reports whether a client's X-Request-Id may be used as the
// request id: 1 to 128 characters of A-Z, a-z, 0-9 and . _ : / - (ticket
// numbers such as "JIRA-123" or "DSR-2026-0042", trace ids, proxies' ids).
// The request id goes into log lines, the access log and the erasure
// ledger, so nothing else is taken from the client.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestIDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '_', c == ':', c == '/', c == '-':
		default:
			return false
		}
	}
	return true
}

// requestIDs makes request ids: "host/random-000001", the random part
// telling apart the runs of one host, the counter the requests of one run.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() *requestIDs {
	host, _ := os.Hostname()
	host = strings.Map(func(c rune) rune {
		if c != '/' && c < 0x80 && validRequestID(string(c)) {
			return c
		}
		return -1
	}, host)
	if len(host) > 64 {
		host = host[:64]
	}
	if host == "" {
		host = "lethe"
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	// RawURLEncoding: A-Z a-z 0-9 - _, all valid in a request id.
	return &requestIDs{prefix: host + "/" + base64.RawURLEncoding.EncodeToString(b[:])}
}

func (g *requestIDs) next() string {
	n := strconv.FormatUint(g.n.Add(1), 10)
	if len(n) < 6 {
		n = strings.Repeat("0", 6-len(n)) + n
	}
	return g.prefix + "-" + n
}

// assignRequestID gives every request its id: the client's X-Request-Id if
// it is valid (validRequestID), otherwise a new one. It is stored under
// chi's middleware.RequestIDKey, so that middleware.GetReqID finds it.
func (s *Server) assignRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = s.requestIDs.next()
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), middleware.RequestIDKey, id)))
	})
}

// requestInfo is what middleware further in learns of a request and
// observe logs when it is answered: observe puts it in the context before
// the request is authenticated, authenticate fills it in.
type requestInfo struct {
	tokenID string // the principal's, once authenticated
}

type requestInfoKey struct{}

// infoOf returns the request's requestInfo; nil outside observe.
func infoOf(r *http.Request) *requestInfo {
	info, _ := r.Context().Value(requestInfoKey{}).(*requestInfo)
	return info
}
