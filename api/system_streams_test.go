package api_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Lethe's own streams ($lethe-erasures: subject references, actors,
// request ids, counts) are never shown to readers: not by stream id, not
// in $all (with or without a category filter), not in subscriptions,
// state or history. Erasure receipts stay with /v1/erasures.
func TestSystemStreamsAreNeverShownToReaders(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	// A subscriber on $all from the start, live before the erasure.
	sub, err := tk.reader.SubscribeAll(ctx, 0, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{Reason: "request"}); err != nil {
		t.Fatal(err)
	}
	// An event after the erasure records: the subscriber reads past them.
	last := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "note", Data: []byte(`{"n":1}`)}
	if _, err := tk.writer.Append(ctx, "note-1", wire.Exact(-1), last); err != nil {
		t.Fatal(err)
	}

	for name, c := range map[string]*client.Client{"reader": tk.reader, "pii-reader": tk.pii} {
		var p *wire.Problem
		_, err := c.ReadStream(ctx, "$lethe-erasures", client.ReadOptions{})
		if !errors.As(err, &p) || p.Status != http.StatusNotFound || p.Type != api.ProblemTypeBase+"stream-not-found" {
			t.Errorf("%s: read $lethe-erasures: %v; want 404 stream-not-found", name, err)
		}
		_, err = c.State(ctx, "$lethe-erasures", client.StateOptions{})
		if !errors.As(err, &p) || p.Status != http.StatusNotFound {
			t.Errorf("%s: state of $lethe-erasures: %v; want 404", name, err)
		}
		_, err = c.History(ctx, "$lethe-erasures", client.StateOptions{})
		if !errors.As(err, &p) || p.Status != http.StatusNotFound {
			t.Errorf("%s: history of $lethe-erasures: %v; want 404", name, err)
		}
		if _, err := c.SubscribeStream(ctx, "$lethe-erasures", 0, ""); !errors.As(err, &p) || p.Status != http.StatusNotFound {
			t.Errorf("%s: subscribe to $lethe-erasures: %v; want 404", name, err)
		}
		if an, err := c.Analytics(ctx, "$lethe"); err != nil || len(an.Totals) != 0 {
			t.Errorf("%s: analytics of $lethe: %+v, %v; want no counts", name, an, err)
		}
		for _, cats := range [][]string{nil, {"$lethe"}} {
			page, err := c.ReadAll(ctx, client.LogOptions{Limit: 1000, Categories: cats})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Events {
				if eventstore.IsSystemStream(e.StreamID) {
					t.Errorf("%s: $all (categories %v) shows %s/%d (%s)", name, cats, e.StreamID, e.Version, e.Type)
				}
			}
		}
	}

	// The subscription: every event up to note-1, none of Lethe's own.
	for {
		ev, err := sub.Next()
		if err != nil {
			t.Fatalf("subscription: %v", err)
		}
		if ev.Kind != "" {
			continue
		}
		if eventstore.IsSystemStream(ev.Event.StreamID) || strings.Contains(string(ev.Data), "subjectRef") {
			t.Fatalf("the subscription shows %s/%d (%s)", ev.Event.StreamID, ev.Event.Version, ev.Event.Type)
		}
		if ev.Event.StreamID == "note-1" {
			break
		}
	}
}
