package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// brokenAccessLog refuses every row, as a full disk or a lost connection
// would.
type brokenAccessLog struct{}

func (brokenAccessLog) RecordAccess(context.Context, api.AccessRecord) error {
	return errors.New("access log unavailable")
}

// docs/api.md ("The access log"): every answer that carries decrypted
// personal data is recorded before it is sent; if it cannot be recorded,
// the data is not sent. Each such route of a server whose access log
// refuses rows answers with a problem that holds no personal value (a
// subscription: an error event) — while the same routes still serve a
// reader, to whom nothing is decrypted.
func TestNoAccessLogRowNoPersonalData(t *testing.T) {
	d := newDeployment(t)
	a := d.server()
	tk := d.tokens(a)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	eventually(t, "lookup through a", func() error {
		s, err := tk.pii.Lookup(ctx, "lead", "/phone-number", "555-2951")
		if err != nil || fmt.Sprint(s) != "[lead-12]" {
			return fmt.Errorf("%v, %v", s, err)
		}
		return nil
	})
	wp, err := tk.admin.CreateToken(ctx, "writer-pii", wire.RoleWriter, wire.RolePIIReader)
	if err != nil {
		t.Fatal(err)
	}
	b := d.server(func(o *api.Options) { o.AccessLog = brokenAccessLog{} })

	refused := func(what string, status int, body string) {
		t.Helper()
		if status != http.StatusInternalServerError || !strings.Contains(body, "/problems/internal") {
			t.Errorf("%s with the access log down: got %d %.200s; want 500 internal", what, status, body)
		}
		for _, s := range seedSecrets {
			if strings.Contains(body, s) {
				t.Errorf("%s with the access log down: the answer holds %q", what, s)
			}
		}
	}
	pii, reader, admin := tk.secrets[wire.RolePIIReader], tk.secrets[wire.RoleReader], d.adminToken
	for _, path := range []string{
		"/v1/streams/lead-12/events",
		"/v1/events",
		"/v1/streams/lead-12/state",
		"/v1/streams/lead-12/state?version=2",
		"/v1/streams/lead-12/history",
		"/v1/lookup?category=lead&field=/phone-number&value=555-2951",
	} {
		status, body := getRaw(t, b.URL+path, pii)
		refused("pii-reader GET "+path, status, body)
		if strings.HasPrefix(path, "/v1/lookup") {
			continue // pii-reader only
		}
		if status, body := getRaw(t, b.URL+path, reader); status != http.StatusOK {
			t.Errorf("reader GET %s with the access log down: got %d %.200s; want 200 (nothing decrypted, nothing to record)", path, status, body)
		}
	}
	// The subject access export, of a subject with data and of one
	// without (recorded all the same).
	for _, subject := range []string{casey, "nobody@example.com"} {
		status, body := getRaw(t, b.URL+"/v1/subjects/"+url.PathEscape(subject)+"/export", admin)
		refused("subject export", status, body)
	}

	// A conflict answer opens the events since the expected version.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.URL+"/v1/streams/lead-12/events", strings.NewReader(
		`{"expectedVersion": 2, "events": [{"id": "`+eventstore.NewEventID().String()+`", "type": "contacted", "data": {"n": 1}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+wp.Secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&sb)
	resp.Body.Close()
	refused("conflict", resp.StatusCode, sb.String())

	// A subscription: the first thing after the comment is an error
	// event, never an event with data.
	for _, path := range []string{"/v1/streams/lead-12/subscribe", "/v1/subscribe"} {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		req, err := http.NewRequestWithContext(sctx, http.MethodGet, b.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+pii)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			got = append(got, line)
			if strings.HasPrefix(line, "data:") {
				break
			}
		}
		resp.Body.Close()
		cancel()
		out := strings.Join(got, "\n")
		if !strings.Contains(out, "event: error") || !strings.Contains(out, "/problems/internal") {
			t.Errorf("subscription %s with the access log down: got %q; want an error event first", path, out)
		}
		for _, s := range seedSecrets {
			if strings.Contains(out, s) {
				t.Errorf("subscription %s with the access log down: sent %q", path, s)
			}
		}
	}
}
