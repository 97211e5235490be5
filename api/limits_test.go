package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Each limit on what one writer's request can make the server do is tested
// at the limit (accepted) and one past it (refused with its problem type,
// nothing written).

func withLimits(set func(*api.Limits)) func(*api.Options) {
	return func(o *api.Options) { set(&o.Limits) }
}

// wantProblem fails unless err is a problem of the given status and type.
func wantProblem(t *testing.T, what string, err error, status int, typ string) {
	t.Helper()
	var p *wire.Problem
	if !errors.As(err, &p) || p.Status != status || p.Type != api.ProblemTypeBase+typ {
		t.Fatalf("%s: %v; want %d %s", what, err, status, typ)
	}
	if p.Detail == "" {
		t.Errorf("%s: a problem without detail", what)
	}
}

// values returns event data with n leaves.
func values(n int) json.RawMessage {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprint(i)
	}
	return json.RawMessage(`{"items":[` + strings.Join(parts, ",") + `]}`)
}

func newEvent(data json.RawMessage) wire.NewEvent {
	return wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "order-placed", Data: data}
}

// sizedEvent is an order whose stored size is the same for every i < 10.
func sizedEvent(i int) wire.NewEvent {
	return newEvent(json.RawMessage(fmt.Sprintf(`{"n":%d,"note":"%s"}`, i, strings.Repeat("x", 200))))
}

// appendSized appends n sized events to stream, one append each, and
// returns the stored size of one (what MaxPageBytes counts).
func appendSized(t *testing.T, d *deployment, w *client.Client, stream string, n int) int {
	t.Helper()
	ctx := testenv.Context(t)
	for i := range n {
		if _, err := w.Append(ctx, stream, wire.Exact(int64(i)-1), sizedEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	stored, err := d.open().Events().ReadStream(ctx, stream, eventstore.ReadStreamOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if stored[0].Size < 200 {
		t.Fatalf("stored size %d", stored[0].Size)
	}
	return stored[0].Size
}

// The lookup index writes a row per leaf of an event's data: leaves are
// bounded per event and per append.
func TestLeavesPerEventAndPerAppendAreBounded(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxLeavesPerEvent, l.MaxLeavesPerAppend = 5, 8 }))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	if _, err := tk.writer.Append(ctx, "order-1", wire.Any(), newEvent(values(5))); err != nil {
		t.Fatalf("an event of 5 leaves (the limit): %v", err)
	}
	_, err := tk.writer.Append(ctx, "order-1", wire.Any(), newEvent(values(6)))
	wantProblem(t, "an event of 6 leaves", err, 400, "too-many-leaves")
	// Keys are no leaves; nested objects count their values.
	nested := json.RawMessage(`{"a":{"b":"x","c":[true,null]},"d":"y","e":1.5}`)
	if _, err := tk.writer.Append(ctx, "order-1", wire.Any(), newEvent(nested)); err != nil {
		t.Fatalf("an event of 5 nested leaves: %v", err)
	}
	if _, err := tk.writer.Append(ctx, "order-1", wire.Any(), newEvent(values(4)), newEvent(values(4))); err != nil {
		t.Fatalf("an append of 8 leaves (the limit): %v", err)
	}
	_, err = tk.writer.Append(ctx, "order-1", wire.Any(), newEvent(values(4)), newEvent(values(5)))
	wantProblem(t, "an append of 9 leaves", err, 400, "too-many-leaves")
	page, err := tk.reader.ReadStream(ctx, "order-1", client.ReadOptions{})
	if err != nil || len(page.Events) != 4 {
		t.Fatalf("the stream holds %d events (%v); want the 4 accepted", len(page.Events), err)
	}
}

// Each new data subject of an append is a key created in Vault before the
// append is tried: subjects per append are bounded, and an append past the
// bound creates no key at all.
func TestSubjectsPerAppendAreBoundedBeforeAnyKeyIsMade(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxSubjectsPerAppend = 3 }))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	subjectKeys := func() int {
		s, err := testenv.VaultRoot(t).Logical().ListWithContext(ctx, d.vault.Mount+"/metadata/"+d.vault.Prefix+"/subjects")
		if err != nil {
			t.Fatal(err)
		}
		if s == nil {
			return 0
		}
		keys, _ := s.Data["keys"].([]any)
		return len(keys)
	}
	people := func(stream string, n int) []wire.NewEvent {
		var evs []wire.NewEvent
		for i := range n {
			evs = append(evs, wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "guest-added", Data: json.RawMessage(`{"name":"Guest"}`),
				PersonalData: []wire.PersonalData{{Subject: fmt.Sprintf("%s-guest-%d@example.com", stream, i), Paths: []string{"/name"}}}})
		}
		return evs
	}
	if _, err := tk.writer.Append(ctx, "party-1", wire.Exact(-1), people("party-1", 3)...); err != nil {
		t.Fatalf("an append of 3 subjects (the limit): %v", err)
	}
	if n := subjectKeys(); n != 3 {
		t.Fatalf("%d subject keys after an append of 3 subjects", n)
	}
	_, err := tk.writer.Append(ctx, "party-2", wire.Exact(-1), people("party-2", 4)...)
	wantProblem(t, "an append of 4 subjects", err, 400, "too-many-subjects")
	if n := subjectKeys(); n != 3 {
		t.Errorf("%d subject keys after a refused append of 4 subjects; want still 3", n)
	}
	// One subject in many events is one subject.
	evs := append(people("party-3", 1), people("party-3", 1)...)
	if _, err := tk.writer.Append(ctx, "party-3", wire.Exact(-1), append(evs, people("party-3x", 2)...)...); err != nil {
		t.Fatalf("an append of 4 events and 3 subjects: %v", err)
	}
}

// A page ends once its events reach MaxPageBytes (as stored), whatever
// its limit, with a next link: paging through gives every event once, in
// order, forward, backward, on the global log and by subscription.
func TestPagesAreBoundedInBytes(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	tk := d.tokens(d.server())
	ctx := testenv.Context(t)
	size := appendSized(t, d, tk.writer, "order-1", 10)
	serve := func(maxBytes int) *client.Client {
		hs := d.server(withLimits(func(l *api.Limits) { l.MaxPageBytes = maxBytes }))
		return client.New(hs.URL, tk.secrets[wire.RoleReader], hs.Client())
	}
	pages := func(c *client.Client, opts client.ReadOptions) (sizes []int, versions []int64) {
		for range 20 {
			p, err := c.ReadStream(ctx, "order-1", opts)
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(p.Events))
			for _, e := range p.Events {
				versions = append(versions, e.Version)
			}
			if p.Next == nil {
				return sizes, versions
			}
			opts.From = p.Next
		}
		t.Fatal("paging did not end")
		return nil, nil
	}

	atLimit, onePast := serve(3*size), serve(3*size+1)
	for _, c := range []struct {
		name     string
		c        *client.Client
		opts     client.ReadOptions
		pages    string
		versions string
	}{
		{"at the limit", atLimit, client.ReadOptions{Limit: 10}, "[3 3 3 1]", "[0 1 2 3 4 5 6 7 8 9]"},
		{"one past", onePast, client.ReadOptions{Limit: 10}, "[4 4 2]", "[0 1 2 3 4 5 6 7 8 9]"},
		{"backward", atLimit, client.ReadOptions{Limit: 10, Backward: true}, "[3 3 3 1]", "[9 8 7 6 5 4 3 2 1 0]"},
		{"under the count limit", atLimit, client.ReadOptions{Limit: 2}, "[2 2 2 2 2]", "[0 1 2 3 4 5 6 7 8 9]"},
	} {
		sizes, versions := pages(c.c, c.opts)
		if fmt.Sprint(sizes) != c.pages || fmt.Sprint(versions) != c.versions {
			t.Errorf("%s: pages %v of versions %v; want %s of %s", c.name, sizes, versions, c.pages, c.versions)
		}
	}

	// The global log: the same cut, continued by next.
	// (An empty page is the horizon held back by a transaction of another
	// test on the same PostgreSQL server: read again.)
	var got []int64
	from := int64(0)
	for deadline := time.Now().Add(30 * time.Second); len(got) < 10 && time.Now().Before(deadline); {
		p, err := atLimit.ReadAll(ctx, client.LogOptions{FromPosition: from, Limit: 10, Categories: []string{"order"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) > 3 {
			t.Fatalf("a page of the log of %d events, over 3 × %d bytes", len(p.Events), size)
		}
		if len(p.Events) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		for _, e := range p.Events {
			got = append(got, e.Version)
		}
		from = p.Next
	}
	if fmt.Sprint(got) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Errorf("the log paged by bytes: versions %v", got)
	}

	// A subscription's catch-up reads in batches bounded the same way.
	sub, err := atLimit.SubscribeStream(ctx, "order-1", 0, "")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var seen []int64
	for len(seen) < 10 {
		ev, err := sub.Next()
		if err != nil {
			t.Fatalf("subscription after %v: %v", seen, err)
		}
		if ev.Kind == "" {
			seen = append(seen, ev.Event.Version)
		}
	}
	if fmt.Sprint(seen) != "[0 1 2 3 4 5 6 7 8 9]" {
		t.Errorf("subscription: versions %v", seen)
	}
}

// A token holds at most MaxSubscriptionsPerToken subscriptions open on a
// server; another token is not affected, and a closed one frees its slot.
func TestSubscriptionsPerTokenAreBounded(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxSubscriptionsPerToken = 2 }))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	first, err := tk.reader.SubscribeAll(ctx, 0, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := tk.reader.SubscribeStream(ctx, "order-1", 0, "")
	if err != nil {
		t.Fatalf("a second subscription (the limit): %v", err)
	}
	defer second.Close()
	_, err = tk.reader.SubscribeAll(ctx, 0, "", nil, nil)
	wantProblem(t, "a third subscription", err, 429, "too-many-subscriptions")
	other, err := tk.pii.SubscribeAll(ctx, 0, "", nil, nil)
	if err != nil {
		t.Fatalf("another token's subscription: %v", err)
	}
	defer other.Close()
	first.Close()
	testenv.Eventually(t, "a closed subscription frees its slot", 30*time.Second, func() error {
		s, err := tk.reader.SubscribeAll(ctx, 0, "", nil, nil)
		if err != nil {
			return err
		}
		return s.Close()
	})
}
