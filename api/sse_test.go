package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Revoking a token ends the subscriptions open with it: the subscriber gets
// an unauthenticated error and nothing appended after the revocation —
// whether the next thing to send is a batch of events or a heartbeat.
func TestRevokedTokenEndsSubscription(t *testing.T) {
	for _, tc := range []struct {
		name      string
		heartbeat time.Duration
		appendNew bool // append an event after the revocation
	}{
		// No heartbeat during the test: the batch is what is checked.
		{"before a batch", time.Hour, true},
		// Nothing appended: the heartbeat is what is checked.
		{"at a heartbeat", 100 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeployment(t)
			hs := d.server(func(o *api.Options) { o.Limits.SSEHeartbeat = tc.heartbeat })
			tk := d.tokens(hs)
			ctx := testenv.Context(t)
			lead := func(subject, name string) wire.NewEvent {
				return wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
					Data:         json.RawMessage(`{"first-name":"` + name + `"}`),
					PersonalData: []wire.PersonalData{{Subject: subject, Paths: []string{"/first-name"}}}}
			}
			if _, err := tk.writer.Append(ctx, "lead-1", wire.Any(), lead("ash@example.com", "Ash")); err != nil {
				t.Fatal(err)
			}

			sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			sub, err := tk.pii.SubscribeStream(sctx, "lead-1", 0, "")
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			// Before the revocation: the event, decrypted, then caught-up.
			ev, err := sub.Next()
			if err != nil || ev.Kind != "" || data(t, ev.Event)["first-name"] != "Ash" {
				t.Fatalf("first event: got %q %s, %v; want Ash's event decrypted", ev.Kind, ev.Data, err)
			}
			if ev, err := sub.Next(); err != nil || ev.Kind != "caught-up" {
				t.Fatalf("second event: got %q, %v; want caught-up", ev.Kind, err)
			}

			if err := tk.admin.RevokeToken(ctx, tk.ids[wire.RolePIIReader]); err != nil {
				t.Fatal(err)
			}
			if tc.appendNew {
				if _, err := tk.writer.Append(ctx, "lead-1", wire.Any(), lead("blake@example.com", "Blake")); err != nil {
					t.Fatal(err)
				}
			}
			ev, err = sub.Next()
			if err != nil {
				t.Fatalf("after the revocation: got %v, want an error event", err)
			}
			if strings.Contains(string(ev.Data), "Blake") {
				t.Fatalf("after the revocation: got %q %s, want no more data", ev.Kind, ev.Data)
			}
			var p wire.Problem
			if err := json.Unmarshal(ev.Data, &p); err != nil || ev.Kind != "error" {
				t.Fatalf("after the revocation: got %q %s, want an error event", ev.Kind, ev.Data)
			}
			if got, want := p.Type, api.ProblemTypeBase+"unauthenticated"; got != want {
				t.Errorf("problem type: got %q, want %q", got, want)
			}
			if got, want := p.Status, 401; got != want {
				t.Errorf("problem status: got %d, want %d", got, want)
			}
			if p.RequestID == "" {
				t.Errorf("problem requestId: got empty, want the request id")
			}
			if ev, err := sub.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("after the error event: got %q %s, %v; want the stream ended (EOF)", ev.Kind, ev.Data, err)
			}

			// Nothing was decrypted for the revoked token after the first batch.
			var n int
			if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE token_id = $1`, tk.ids[wire.RolePIIReader]).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if got, want := n, 1; got != want {
				t.Errorf("access log rows of the revoked token: got %d, want %d (the batch before the revocation)", got, want)
			}
			// And it cannot subscribe again.
			if _, err := tk.pii.SubscribeStream(ctx, "lead-1", 0, ""); problemType(err) != "unauthenticated" {
				t.Errorf("subscribe with the revoked token: got %v, want unauthenticated", err)
			}
		})
	}
}
