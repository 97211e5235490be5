package app_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// tcpProxy forwards loopback connections to a real server until cut: then
// it closes every connection and stops listening, as a database that
// crashed or became unreachable does.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); s.Close() }()
		go func() { _, _ = io.Copy(c, s); c.Close() }()
	}
}

// cut makes the database unreachable: open connections break, new ones
// are refused.
func (p *tcpProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// A PostgreSQL outage is a 503 of its own type on every route that needs
// the database, never a 500 (a 500 means a bug), and /readyz says so.
func TestDatabaseOutageIsA503(t *testing.T) {
	t.Parallel()
	dbURL := testenv.MigratedDatabase(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	logs := &testenv.SyncBuffer{}
	a := openWith(t, u.String(), lethesVault(t), logs)
	hs := serve(t, a)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, adminToken, hs.Client())
	tok, err := admin.CreateToken(ctx, "writer+pii", wire.RoleWriter, wire.RolePIIReader)
	if err != nil {
		t.Fatal(err)
	}
	w := client.New(hs.URL, tok.Secret, hs.Client())
	ev := func() wire.NewEvent {
		return wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Casey","status":"new"}`),
			PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	}
	if _, err := w.Append(ctx, "lead-12", wire.Exact(-1), ev()); err != nil {
		t.Fatal(err)
	}

	proxy.cut()
	want := api.ProblemTypeBase + "database-unavailable"
	check := func(what string, err error) {
		t.Helper()
		var p *wire.Problem
		if !errors.As(err, &p) || p.Type != want || p.Status != http.StatusServiceUnavailable {
			t.Errorf("%s with PostgreSQL down: %v; want 503 %s", what, err, want)
		}
	}
	_, err = w.Append(ctx, "lead-12", wire.Exact(0), ev())
	check("append", err)
	_, err = w.ReadStream(ctx, "lead-12", client.ReadOptions{})
	check("read", err)
	_, err = w.ReadAll(ctx, client.LogOptions{})
	check("log", err)
	_, err = admin.Erase(ctx, "casey@example.com", wire.EraseRequest{})
	check("erase", err)
	_, err = admin.CreateToken(ctx, "another", wire.RoleReader)
	check("token create", err)

	// The raw answer: problem+json with Retry-After, so that a client or a
	// proxy waits before retrying.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/v1/streams/lead-12/events", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Secret)
	raw, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw.Body.Close()
	if raw.StatusCode != http.StatusServiceUnavailable || raw.Header.Get("Retry-After") == "" ||
		raw.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("raw read with PostgreSQL down: %d, Retry-After %q, Content-Type %q; want 503 problem+json with Retry-After",
			raw.StatusCode, raw.Header.Get("Retry-After"), raw.Header.Get("Content-Type"))
	}

	resp, err := hs.Client().Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "not-ready") {
		t.Errorf("/readyz with PostgreSQL down: %d %s; want 503 not-ready", resp.StatusCode, body)
	}
	if out := logs.String(); strings.Contains(out, "Casey") || strings.Contains(out, "casey@example.com") || strings.Contains(out, tok.Secret) {
		t.Errorf("the server log holds personal data or the token:\n%s", out)
	}
}
