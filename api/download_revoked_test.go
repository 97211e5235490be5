package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// smallBuffers makes accepted connections' send buffers small, so that
// a server cannot write a long answer far ahead of its reader.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// revokeAfterFirstWrite revokes a token once the download's first bytes
// have arrived.
type revokeAfterFirstWrite struct {
	revoke  func() error
	n       int64
	revoked bool
}

func (w *revokeAfterFirstWrite) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	if !w.revoked {
		w.revoked = true
		if err := w.revoke(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// A download (subject export, audit export) checks its token before each
// write, as a subscription does before each batch: once the token is
// revoked, the download stops, cut off without its end. (Before, an
// export started with a token went on to its end after the revocation.)
func TestDownloadStopsWhenItsTokenIsRevoked(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	a := d.open()
	hs := httptest.NewUnstartedServer(a.Handler())
	hs.Listener = smallBuffers{hs.Listener}
	hs.Start()
	t.Cleanup(hs.Close)
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}}
	ctx := testenv.Context(t)
	root := client.New(hs.URL, d.adminToken, hc)
	tok, err := root.CreateToken(ctx, "dpo-laptop", wire.RoleAdmin, wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	dpo := client.New(hs.URL, tok.Secret, hc)
	// About 2 MB of export for one subject.
	note := strings.Repeat("n", 1000)
	for range 2 {
		var evs []wire.NewEvent
		for range 1000 {
			evs = append(evs, wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "note-taken",
				Data:         json.RawMessage(fmt.Sprintf(`{"note":%q}`, note)),
				PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/note"}}}})
		}
		if _, err := dpo.Append(ctx, "notes-1", wire.Any(), evs...); err != nil {
			t.Fatal(err)
		}
	}

	w := &revokeAfterFirstWrite{revoke: func() error { return root.RevokeToken(ctx, tok.ID) }}
	n, err := dpo.ExportSubject(ctx, "casey@example.com", w)
	if err == nil {
		t.Fatalf("the export went on to its end (%d bytes) after its token was revoked", n)
	}
	if !w.revoked || n > 1<<20 {
		t.Fatalf("the export was cut off after %d bytes (revoked: %v); want well before its 2 MB end", n, w.revoked)
	}
	if !strings.Contains(d.logs.String(), "subject export ended: token revoked") {
		t.Errorf("the server did not log why the export stopped")
	}
	// The revoked token cannot start another.
	_, err = dpo.ExportSubject(ctx, "casey@example.com", &strings.Builder{})
	var p *wire.Problem
	if !errors.As(err, &p) || p.Status != 401 {
		t.Errorf("an export with the revoked token: %v; want 401", err)
	}
}
