package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

// a server whose Vault is down (cold key cache) must answer every
// route that would decrypt with 503 key-store-unavailable — never a 200 with
// nulls or a redaction.
func TestVaultOutageIsNeverARedaction(t *testing.T) {
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

	// Vault "down" for the next servers: same prefix, unreachable address.
	dead, err := d.vault.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.SetAddress("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	dead.SetToken(d.vault.Client.Token())
	dead.SetMaxRetries(0)
	d.vault.Client = dead
	ups, err := projection.NewUpcasters(projection.Upcaster{Type: "no-such-type", From: 1,
		Up: func(data json.RawMessage, red []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return data, red, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		configure func(*api.Options)
	}{
		{"snapshot loader", func(*api.Options) {}},
		{"generic fold (upcasters)", func(o *api.Options) { o.Upcasters = ups }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := d.server(tc.configure)
			pii := client.New(b.URL, tk.secrets[wire.RolePIIReader], b.Client())
			writerPII := client.New(b.URL, wp.Secret, b.Client())
			want := "key-store-unavailable"
			check := func(what string, err error) {
				t.Helper()
				if got := problemType(err); got != want {
					t.Errorf("%s with Vault down: got %q (%v), want %s", what, got, err, want)
				}
			}
			_, err := pii.ReadStream(ctx, "lead-12", client.ReadOptions{})
			check("read", err)
			_, err = pii.ReadAll(ctx, client.LogOptions{})
			check("log", err)
			_, err = pii.State(ctx, "lead-12", client.StateOptions{})
			check("state", err)
			_, err = pii.State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(2))})
			check("state at 2", err)
			at := time.Now()
			_, err = pii.State(ctx, "lead-12", client.StateOptions{At: &at})
			check("state at now", err)
			_, err = pii.History(ctx, "lead-12", client.StateOptions{})
			check("history", err)
			_, err = pii.Lookup(ctx, "lead", "/phone-number", "555-2951")
			check("lookup", err)
			_, err = writerPII.Append(ctx, "lead-12", wire.Exact(2), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "contacted", Data: json.RawMessage(`{"n":1}`)})
			var c *client.Conflict
			if errors.As(err, &c) {
				t.Errorf("conflict with Vault down: got 409 with events %+v, want %s", c.Events, want)
			} else {
				check("conflict", err)
			}
			for _, sub := range []struct {
				name string
				open func() (*client.Subscription, error)
			}{
				{"subscribe stream", func() (*client.Subscription, error) { return pii.SubscribeStream(ctx, "lead-12", 0, "") }},
				{"subscribe all", func() (*client.Subscription, error) { return pii.SubscribeAll(ctx, 0, "", nil, nil) }},
			} {
				s, err := sub.open()
				if err != nil {
					t.Errorf("%s: %v", sub.name, err)
					continue
				}
				ev, err := s.Next()
				_ = s.Close()
				var p wire.Problem
				if err != nil || ev.Kind != "error" || json.Unmarshal(ev.Data, &p) != nil || p.Type != api.ProblemTypeBase+want {
					t.Errorf("%s with Vault down: first event %q %s, %v; want an error event %s", sub.name, ev.Kind, ev.Data, err, want)
				}
			}
		})
	}
}

// A server that computed a subject's reference before Vault went down
// (the reference secret stays cached) still cannot open the subject's
// data: the access export must be 503 key-store-unavailable, not a 200
// whose connection is cut after the header — and nothing was shown, so
// nothing is in the access log.
func TestSubjectExportVaultOutageIsAProblem(t *testing.T) {
	d := newDeployment(t)
	a := d.server()
	tk := d.tokens(a)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	// Server b has a Vault client of its own, to take down later.
	good := d.vault
	bc, err := good.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	bc.SetToken(good.Client.Token())
	bc.SetMaxRetries(0)
	d.vault.Client = bc
	b := d.server()
	d.vault = good
	subject := "/v1/subjects/" + url.PathEscape(casey)
	if status, body := getRaw(t, b.URL+subject+"/erasure", d.adminToken); status != http.StatusNotFound {
		t.Fatalf("erasure receipt of casey through b: %d %s; want 404 not-erased", status, body)
	}
	if err := bc.SetAddress("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	count := func() (n int) {
		t.Helper()
		if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE route = '/v1/subjects/{subject}/export'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := count()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL+subject+"/export", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+d.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || readErr != nil || !strings.Contains(string(body), "/problems/key-store-unavailable") {
		t.Errorf("subject export with Vault down: got %d %.200s (read: %v); want 503 key-store-unavailable", resp.StatusCode, body, readErr)
	}
	if after := count(); after != before {
		t.Errorf("subject export with Vault down wrote %d access log row(s); want none (nothing was shown)", after-before)
	}
}
