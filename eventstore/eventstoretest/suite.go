// Package eventstoretest is the behavioural test suite that every
// eventstore.Store implementation must pass. Run it from the
// implementation's tests:
//
//	func TestStore(t *testing.T) {
//		eventstoretest.Run(t, func(t *testing.T) eventstoretest.Store { return newStore(t) })
//	}
package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
)

// Store is what the suite tests: an event store with subscriptions.
type Store interface {
	eventstore.Store
	SubscribeToAll(opts eventstore.SubscribeAllOptions) *eventstore.Subscription
	SubscribeToStream(streamID string, opts eventstore.SubscribeStreamOptions) *eventstore.Subscription
}

// Factory returns a new, empty store for one test.
type Factory func(t *testing.T) Store

// Run runs the whole suite. Every subtest gets a store of its own.
func Run(t *testing.T, newStore Factory) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"AppendNewStream", testAppendNewStream},
		{"ExpectedVersions", testExpectedVersions},
		{"ConflictCarriesConcurrentEvents", testConflictCarriesConcurrentEvents},
		{"IdempotentRetry", testIdempotentRetry},
		{"DuplicateEventIDWithOtherContent", testDuplicateEventID},
		{"AtomicAppend", testAtomicAppend},
		{"LargeBatches", testLargeBatches},
		{"InvalidStreamIDs", testInvalidStreamIDs},
		{"InvalidEvents", testInvalidEvents},
		{"ReadStream", testReadStream},
		{"SeedLeadStream", testSeedLeadStream},
		{"ReadAll", testReadAll},
		{"ReadAllFilters", testReadAllFilters},
		{"SubscribeToAll", testSubscribeToAll},
		{"SubscribeToStream", testSubscribeToStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Event returns an event of the given type with data built from key/value
// pairs.
func Event(typ string, kv ...any) eventstore.EventData {
	m := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return eventstore.EventData{ID: eventstore.NewEventID(), Type: typ, Data: b}
}

func events(n int, typ string) []eventstore.EventData {
	out := make([]eventstore.EventData, n)
	for i := range out {
		out[i] = Event(typ, "n", i)
	}
	return out
}

func mustAppend(t *testing.T, s Store, stream string, exp eventstore.ExpectedVersion, evs ...eventstore.EventData) eventstore.AppendResult {
	t.Helper()
	res, err := s.AppendToStream(ctxFor(t), stream, exp, evs...)
	if err != nil {
		t.Fatalf("append to %s (expected %s): %v", stream, exp, err)
	}
	return res
}

func mustRead(t *testing.T, s Store, stream string, opts eventstore.ReadStreamOptions) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(ctxFor(t), stream, opts)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

func versions(evs []eventstore.RecordedEvent) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.Version
	}
	return out
}

func jsonEqual(t *testing.T, got, want []byte) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("stored JSON does not parse: %v", err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("want JSON does not parse: %v", err)
	}
	return reflect.DeepEqual(g, w)
}

func testAppendNewStream(t *testing.T, s Store) {
	evs := events(3, "thing-happened")
	res := mustAppend(t, s, "order-1", eventstore.NoStream, evs...)
	if res.StreamID != "order-1" || res.FirstVersion != 0 || res.LastVersion != 2 || res.Duplicate {
		t.Fatalf("result = %+v, want versions 0..2 of order-1, not duplicate", res)
	}
	if res.FirstPosition <= 0 || res.LastPosition < res.FirstPosition {
		t.Fatalf("positions %d..%d, want positive and ordered", res.FirstPosition, res.LastPosition)
	}
	got := mustRead(t, s, "order-1", eventstore.ReadStreamOptions{})
	if len(got) != 3 {
		t.Fatalf("read %d events, want 3", len(got))
	}
	for i, e := range got {
		if e.ID != evs[i].ID || e.Type != evs[i].Type || e.Version != int64(i) || e.StreamID != "order-1" {
			t.Errorf("event %d = %+v, want id %s version %d", i, e, evs[i].ID, i)
		}
		if !jsonEqual(t, e.Data, evs[i].Data) {
			t.Errorf("event %d data = %s, want %s", i, e.Data, evs[i].Data)
		}
		if string(e.Metadata) != "{}" {
			t.Errorf("event %d metadata = %s, want {}", i, e.Metadata)
		}
		if e.RecordedAt.IsZero() || e.RecordedAt.Location() != time.UTC {
			t.Errorf("event %d recorded at %v, want a UTC time", i, e.RecordedAt)
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Errorf("event %d position %d not after %d", i, e.Position, got[i-1].Position)
		}
	}
	if got[0].Position != res.FirstPosition || got[2].Position != res.LastPosition {
		t.Errorf("stored positions %d..%d, result said %d..%d", got[0].Position, got[2].Position, res.FirstPosition, res.LastPosition)
	}
	v, err := s.StreamVersion(ctxFor(t), "order-1")
	if err != nil || v != 2 {
		t.Fatalf("StreamVersion = %d, %v; want 2", v, err)
	}
	res2 := mustAppend(t, s, "order-1", eventstore.Exact(2), Event("more"))
	if res2.FirstVersion != 3 || res2.FirstPosition <= res.LastPosition {
		t.Fatalf("second append = %+v, want version 3 after position %d", res2, res.LastPosition)
	}
}

func testExpectedVersions(t *testing.T, s Store) {
	ctx := ctxFor(t)
	cases := []struct {
		name    string
		prepare int // events already in the stream
		exp     eventstore.ExpectedVersion
		ok      bool
	}{
		{"no stream on new", 0, eventstore.NoStream, true},
		{"no stream on existing", 2, eventstore.NoStream, false},
		{"any on new", 0, eventstore.Any, true},
		{"any on existing", 2, eventstore.Any, true},
		{"exists on new", 0, eventstore.StreamExists, false},
		{"exists on existing", 2, eventstore.StreamExists, true},
		{"exact right", 2, eventstore.Exact(1), true},
		{"exact behind", 2, eventstore.Exact(0), false},
		{"exact ahead", 2, eventstore.Exact(5), false},
		{"exact 0 on new", 0, eventstore.Exact(0), false},
	}
	for i, c := range cases {
		stream := fmt.Sprintf("exp-%d", i)
		if c.prepare > 0 {
			mustAppend(t, s, stream, eventstore.NoStream, events(c.prepare, "prep")...)
		}
		res, err := s.AppendToStream(ctx, stream, c.exp, Event("try"))
		if c.ok {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if res.FirstVersion != int64(c.prepare) {
				t.Errorf("%s: appended at version %d, want %d", c.name, res.FirstVersion, c.prepare)
			}
			continue
		}
		var werr *eventstore.WrongExpectedVersionError
		if !errors.As(err, &werr) || !errors.Is(err, eventstore.ErrWrongExpectedVersion) {
			t.Errorf("%s: err = %v, want a WrongExpectedVersionError", c.name, err)
			continue
		}
		if werr.Current != int64(c.prepare-1) || werr.Expected != c.exp || werr.StreamID != stream {
			t.Errorf("%s: conflict = %+v, want current %d", c.name, werr, c.prepare-1)
		}
		if n := len(mustReadOrNone(t, s, stream)); n != c.prepare {
			t.Errorf("%s: stream has %d events after a refused append, want %d", c.name, n, c.prepare)
		}
	}
	if _, err := s.AppendToStream(ctx, "exp-bad", eventstore.ExpectedVersion(-7), Event("x")); err == nil {
		t.Errorf("expected version -7 accepted")
	}
}

func mustReadOrNone(t *testing.T, s Store, stream string) []eventstore.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(ctxFor(t), stream, eventstore.ReadStreamOptions{Limit: 10000})
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

// The seed's point 6: on a conflict the caller gets the events appended
// since its expected version, to decide whether they really conflict.
func testConflictCarriesConcurrentEvents(t *testing.T, s Store) {
	mustAppend(t, s, "lead-7", eventstore.NoStream, Event("lead-initialized"), Event("contacted"))
	// Two writers loaded the stream at version 1; the first wins.
	first := []eventstore.EventData{Event("followup-set", "followup-on", "2020-05-27T12:00:00.00Z"), Event("contacted")}
	mustAppend(t, s, "lead-7", eventstore.Exact(1), first...)
	_, err := s.AppendToStream(ctxFor(t), "lead-7", eventstore.Exact(1), Event("order-submitted"))
	var werr *eventstore.WrongExpectedVersionError
	if !errors.As(err, &werr) {
		t.Fatalf("err = %v, want WrongExpectedVersionError", err)
	}
	if werr.Current != 3 {
		t.Errorf("current = %d, want 3", werr.Current)
	}
	if got := versions(werr.Events); !reflect.DeepEqual(got, []int64{2, 3}) {
		t.Fatalf("conflict events versions = %v, want [2 3]", got)
	}
	for i, e := range werr.Events {
		if e.ID != first[i].ID || e.Type != first[i].Type {
			t.Errorf("conflict event %d = %s %s, want %s %s", i, e.ID, e.Type, first[i].ID, first[i].Type)
		}
	}
	// NoStream on an existing stream hands back the stream from the start.
	_, err = s.AppendToStream(ctxFor(t), "lead-7", eventstore.NoStream, Event("lead-initialized"))
	if !errors.As(err, &werr) || len(werr.Events) != 4 || werr.Events[0].Version != 0 {
		t.Fatalf("NoStream conflict = %v, want the 4 events from version 0", err)
	}
}

func testIdempotentRetry(t *testing.T, s Store) {
	for _, exp := range []eventstore.ExpectedVersion{eventstore.NoStream, eventstore.Any} {
		stream := fmt.Sprintf("retry-%d", -int(exp))
		evs := events(3, "paid")
		first := mustAppend(t, s, stream, exp, evs...)
		mustAppend(t, s, stream, eventstore.Any, Event("later")) // the stream moves on
		again := mustAppend(t, s, stream, exp, evs...)
		if !again.Duplicate {
			t.Errorf("expected %s: retry not flagged duplicate", exp)
		}
		again.Duplicate = false
		if again != first {
			t.Errorf("expected %s: retry result %+v, want the first result %+v", exp, again, first)
		}
		if n := len(mustRead(t, s, stream, eventstore.ReadStreamOptions{})); n != 4 {
			t.Errorf("expected %s: %d events stored after the retry, want 4", exp, n)
		}
	}
	// Exact expected version, retried after success.
	mustAppend(t, s, "retry-exact", eventstore.NoStream, Event("a"))
	evs := events(2, "b")
	first := mustAppend(t, s, "retry-exact", eventstore.Exact(0), evs...)
	again := mustAppend(t, s, "retry-exact", eventstore.Exact(0), evs...)
	if !again.Duplicate || again.FirstVersion != first.FirstVersion || again.LastPosition != first.LastPosition {
		t.Errorf("exact retry = %+v, want duplicate of %+v", again, first)
	}
}

func testDuplicateEventID(t *testing.T, s Store) {
	ctx := ctxFor(t)
	e := Event("created", "k", 1)
	mustAppend(t, s, "dup-1", eventstore.NoStream, e)

	changed := e
	changed.Data = json.RawMessage(`{"k":2}`)
	if _, err := s.AppendToStream(ctx, "dup-1", eventstore.Any, changed); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("same id, other data: err = %v, want ErrDuplicateEventID", err)
	}
	if _, err := s.AppendToStream(ctx, "dup-2", eventstore.NoStream, e); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("same id, other stream: err = %v, want ErrDuplicateEventID", err)
	}
	if _, err := s.AppendToStream(ctx, "dup-1", eventstore.Any, Event("new"), e); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("batch partly stored: err = %v, want ErrDuplicateEventID", err)
	}
	if _, err := s.AppendToStream(ctx, "dup-1", eventstore.Exact(5), e); err == nil {
		t.Errorf("same event with another expected version: accepted")
	}
	if n := len(mustReadOrNone(t, s, "dup-1")); n != 1 {
		t.Errorf("dup-1 has %d events, want 1", n)
	}
	if n := len(mustReadOrNone(t, s, "dup-2")); n != 0 {
		t.Errorf("dup-2 has %d events, want 0", n)
	}
	// The same id twice in one append is refused too.
	twice := Event("x")
	if _, err := s.AppendToStream(ctx, "dup-3", eventstore.NoStream, twice, twice); err == nil {
		t.Errorf("same id twice in one append: accepted")
	}
	if n := len(mustReadOrNone(t, s, "dup-3")); n != 0 {
		t.Errorf("dup-3 has %d events, want 0", n)
	}
}

func testAtomicAppend(t *testing.T, s Store) {
	ctx := ctxFor(t)
	existing := Event("x")
	mustAppend(t, s, "atomic-1", eventstore.NoStream, existing)
	batch := append(events(5, "y"), existing) // the last one collides
	if _, err := s.AppendToStream(ctx, "atomic-2", eventstore.NoStream, batch...); err == nil {
		t.Fatalf("append with a colliding event id succeeded")
	}
	if _, err := s.StreamVersion(ctx, "atomic-2"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("after a failed append: StreamVersion err = %v, want ErrStreamNotFound (nothing written)", err)
	}
	// A bad event in the middle of a batch: nothing of it is written.
	batch = events(3, "z")
	batch[1].Data = json.RawMessage(`{"bad": "\u0000"}`)
	if _, err := s.AppendToStream(ctx, "atomic-3", eventstore.NoStream, batch...); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("append with a NUL character: err = %v, want ErrInvalidEvent", err)
	}
	if _, err := s.StreamVersion(ctx, "atomic-3"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("after a failed append: StreamVersion err = %v, want ErrStreamNotFound", err)
	}
}

// Implementations may store large batches another way (the PostgreSQL store
// uses COPY): the same rules hold for them.
func testLargeBatches(t *testing.T, s Store) {
	ctx := ctxFor(t)
	const n = 25
	first := events(n, "bulk")
	res := mustAppend(t, s, "bulk-1", eventstore.NoStream, first...)
	if res.FirstVersion != 0 || res.LastVersion != n-1 || res.LastPosition-res.FirstPosition < n-1 {
		t.Fatalf("result = %+v", res)
	}
	got := mustRead(t, s, "bulk-1", eventstore.ReadStreamOptions{})
	for i, e := range got {
		if e.ID != first[i].ID || e.Version != int64(i) || !jsonEqual(t, e.Data, first[i].Data) {
			t.Fatalf("event %d = %+v", i, e)
		}
		if i > 0 && e.Position <= got[i-1].Position {
			t.Fatalf("positions not increasing at %d", i)
		}
	}
	// Conflict, with the concurrent events.
	_, err := s.AppendToStream(ctx, "bulk-1", eventstore.Exact(n-3), events(n, "late")...)
	var werr *eventstore.WrongExpectedVersionError
	if !errors.As(err, &werr) || werr.Current != n-1 || !reflect.DeepEqual(versions(werr.Events), []int64{n - 2, n - 1}) {
		t.Fatalf("conflict = %v, want current %d and versions %d, %d", err, n-1, n-2, n-1)
	}
	if _, err := s.AppendToStream(ctx, "bulk-2", eventstore.StreamExists, events(n, "x")...); !errors.As(err, &werr) {
		t.Fatalf("StreamExists on a new stream: %v", err)
	}
	// Idempotent retry.
	again := mustAppend(t, s, "bulk-1", eventstore.NoStream, first...)
	if !again.Duplicate || again.LastVersion != n-1 {
		t.Fatalf("retry = %+v, want a duplicate of versions 0..%d", again, n-1)
	}
	// Exact and Any.
	more := events(n, "more")
	if r := mustAppend(t, s, "bulk-1", eventstore.Exact(n-1), more...); r.FirstVersion != n {
		t.Fatalf("exact append at %d, want %d", r.FirstVersion, n)
	}
	if r := mustAppend(t, s, "bulk-1", eventstore.Any, events(n, "any")...); r.FirstVersion != 2*n {
		t.Fatalf("any append at %d, want %d", r.FirstVersion, 2*n)
	}
	// A reused id or a bad value anywhere in the batch: nothing written.
	reuse := events(n, "reuse")
	reuse[n-1] = more[3]
	if _, err := s.AppendToStream(ctx, "bulk-3", eventstore.NoStream, reuse...); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Fatalf("batch reusing an id: %v, want ErrDuplicateEventID", err)
	}
	bad := events(n, "bad")
	bad[17].Data = json.RawMessage(`{"x":"\u0000"}`)
	if _, err := s.AppendToStream(ctx, "bulk-3", eventstore.NoStream, bad...); !errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Fatalf("batch with a NUL: %v, want ErrInvalidEvent", err)
	}
	twice := events(n, "twice")
	twice[5] = twice[6]
	if _, err := s.AppendToStream(ctx, "bulk-3", eventstore.NoStream, twice...); err == nil {
		t.Fatalf("batch with an id twice: accepted")
	}
	if _, err := s.StreamVersion(ctx, "bulk-3"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("after refused batches: %v, want ErrStreamNotFound", err)
	}
}

func testInvalidStreamIDs(t *testing.T, s Store) {
	ctx := ctxFor(t)
	long := make([]byte, eventstore.MaxStreamIDLength+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, id := range []string{"", "$all", "$", "-lead", "lead 12", "lead/12", "lead-12?x", "ünïcode", "lead\x00", string(long)} {
		_, err := s.AppendToStream(ctx, id, eventstore.Any, Event("x"))
		var ierr *eventstore.InvalidStreamIDError
		if !errors.Is(err, eventstore.ErrInvalidStreamID) || !errors.As(err, &ierr) {
			t.Errorf("append to %q: err = %v, want ErrInvalidStreamID", id, err)
		}
		if _, err := s.ReadStream(ctx, id, eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrInvalidStreamID) {
			t.Errorf("read %q: err = %v, want ErrInvalidStreamID", id, err)
		}
	}
	for _, id := range []string{"lead-12", "a", "Order_9.x:y@z", "$lethe-erasures", string(long[:eventstore.MaxStreamIDLength])} {
		if _, err := s.AppendToStream(ctx, id, eventstore.NoStream, Event("x")); err != nil {
			t.Errorf("append to %q: %v", id, err)
		}
	}
}

func testInvalidEvents(t *testing.T, s Store) {
	ctx := ctxFor(t)
	good := func() eventstore.EventData { return Event("ok") }
	cases := map[string]func(e *eventstore.EventData){
		"no id":           func(e *eventstore.EventData) { e.ID = eventstore.EventID{} },
		"no type":         func(e *eventstore.EventData) { e.Type = "" },
		"type with space": func(e *eventstore.EventData) { e.Type = "lead created" },
		"no data":         func(e *eventstore.EventData) { e.Data = nil },
		"data array":      func(e *eventstore.EventData) { e.Data = json.RawMessage(`[1,2]`) },
		"data string":     func(e *eventstore.EventData) { e.Data = json.RawMessage(`"x"`) },
		"data invalid":    func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"a":`) },
		"data trailing":   func(e *eventstore.EventData) { e.Data = json.RawMessage(`{} {}`) },
		"metadata array":  func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`[]`) },
		"NUL in data":     func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"a":"x\u0000y"}`) },
		"NUL in a key":    func(e *eventstore.EventData) { e.Data = json.RawMessage(`{"\u0000":1}`) },
		"NUL in metadata": func(e *eventstore.EventData) { e.Metadata = json.RawMessage(`{"a":"\u0000"}`) },
	}
	for name, mutate := range cases {
		e := good()
		mutate(&e)
		stream := "inv-" + fmt.Sprint(len(name))
		_, err := s.AppendToStream(ctx, stream, eventstore.Any, good(), e)
		if !errors.Is(err, eventstore.ErrInvalidEvent) {
			t.Errorf("%s: err = %v, want ErrInvalidEvent", name, err)
		}
	}
	if _, err := s.AppendToStream(ctx, "inv-none", eventstore.Any); !errors.Is(err, eventstore.ErrTooManyEvents) {
		t.Errorf("no events: err = %v, want ErrTooManyEvents", err)
	}
	if evs, err := s.ReadAll(ctx, eventstore.ReadAllOptions{}); err != nil || len(evs.Events) != 0 {
		t.Errorf("after refused appends: $all has %d events (err %v), want none", len(evs.Events), err)
	}
	// Escaped backslashes and unusual but valid JSON round-trip.
	odd := eventstore.EventData{ID: eventstore.NewEventID(), Type: "odd", Data: json.RawMessage(`{"path":"C:\\u0000dir","big":12345678901234567890,"f":1.5e300,"nested":{"a":[1,{"b":null}]},"uni":"\u00e9\ud83d\ude00"}`)}
	mustAppend(t, s, "inv-odd", eventstore.NoStream, odd)
	got := mustRead(t, s, "inv-odd", eventstore.ReadStreamOptions{})
	if !jsonEqual(t, got[0].Data, odd.Data) {
		t.Errorf("odd data = %s, want %s", got[0].Data, odd.Data)
	}
}

func testReadStream(t *testing.T, s Store) {
	ctx := ctxFor(t)
	mustAppend(t, s, "read-1", eventstore.NoStream, events(10, "e")...)
	cases := []struct {
		opts eventstore.ReadStreamOptions
		want []int64
	}{
		{eventstore.ReadStreamOptions{}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{eventstore.ReadStreamOptions{From: 7}, []int64{7, 8, 9}},
		{eventstore.ReadStreamOptions{From: 2, Limit: 3}, []int64{2, 3, 4}},
		{eventstore.ReadStreamOptions{From: 10}, []int64{}},
		{eventstore.ReadStreamOptions{From: eventstore.EndOfStream, Backward: true, Limit: 3}, []int64{9, 8, 7}},
		{eventstore.ReadStreamOptions{From: 2, Backward: true}, []int64{2, 1, 0}},
		{eventstore.ReadStreamOptions{From: 0, Backward: true}, []int64{0}},
	}
	for _, c := range cases {
		got := versions(mustRead(t, s, "read-1", c.opts))
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("read %+v = %v, want %v", c.opts, got, c.want)
		}
	}
	if _, err := s.ReadStream(ctx, "read-nope", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("read unknown stream: err = %v, want ErrStreamNotFound", err)
	}
	if _, err := s.StreamVersion(ctx, "read-nope"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("version of unknown stream: err = %v, want ErrStreamNotFound", err)
	}
}

// SeedLead is the seed's example stream (mission.md), one event per entry,
// without the lead-id, event-id and event-type fields that Lethe stores as
// the stream id, the version and the type.
var SeedLead = []struct {
	Type string
	Data string
}{
	{"lead-initialized", `{"first-name":"Casey","last-name":"David","phone-number":"555-2951","timestamp":"2020-05-20T09:52:55.95Z"}`},
	{"contacted", `{"timestamp":"2020-05-20T12:32:08.24Z"}`},
	{"followup-set", `{"followup-on":"2020-05-27T12:00:00.00Z","timestamp":"2020-05-20T12:32:08.24Z"}`},
	{"contact-details-updated", `{"first-name":"Casey","last-name":"Davis","phone-number":"555-8101","timestamp":"2020-05-20T12:32:08.24Z"}`},
	{"contacted", `{"timestamp":"2020-05-27T12:02:12.51Z"}`},
	{"order-submitted", `{"payment-deadline":"2020-05-30T12:02:12.51Z","timestamp":"2020-05-27T12:02:12.51Z"}`},
	{"payment-confirmed", `{"status":"converted","timestamp":"2020-05-27T12:38:44.12Z"}`},
}

// SeedLeadEvents returns the seed's stream as events with new ids.
func SeedLeadEvents() []eventstore.EventData {
	out := make([]eventstore.EventData, len(SeedLead))
	for i, e := range SeedLead {
		out[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: e.Type, Data: json.RawMessage(e.Data)}
	}
	return out
}

// The seed's aggregate loop: load, decide, append with the expected version.
func testSeedLeadStream(t *testing.T, s Store) {
	evs := SeedLeadEvents()
	// Appended one by one, each guarded by the version the writer saw.
	for i, e := range evs {
		res := mustAppend(t, s, "lead-12", eventstore.Exact(int64(i)-1), e)
		if res.FirstVersion != int64(i) {
			t.Fatalf("event %d stored at version %d", i, res.FirstVersion)
		}
	}
	got := mustRead(t, s, "lead-12", eventstore.ReadStreamOptions{})
	for i, e := range got {
		if e.Type != SeedLead[i].Type || !jsonEqual(t, e.Data, []byte(SeedLead[i].Data)) {
			t.Errorf("version %d = %s %s, want %s %s", i, e.Type, e.Data, SeedLead[i].Type, SeedLead[i].Data)
		}
	}
	last := mustRead(t, s, "lead-12", eventstore.ReadStreamOptions{From: eventstore.EndOfStream, Backward: true, Limit: 1})
	if last[0].Version != 6 || last[0].Type != "payment-confirmed" {
		t.Errorf("last event = %d %s, want 6 payment-confirmed", last[0].Version, last[0].Type)
	}
}

func readWholeLog(t *testing.T, s Store, opts eventstore.ReadAllOptions) []eventstore.RecordedEvent {
	t.Helper()
	var all []eventstore.RecordedEvent
	for {
		page, err := s.ReadAll(ctxFor(t), opts)
		if err != nil {
			t.Fatalf("read $all: %v", err)
		}
		if page.Next < opts.After {
			t.Fatalf("page.Next %d went back from %d", page.Next, opts.After)
		}
		all = append(all, page.Events...)
		if len(page.Events) == 0 && !page.HeldBack {
			return all
		}
		if page.HeldBack {
			// An older transaction, maybe another test's, holds the
			// horizon: what this test appended may not be readable yet.
			time.Sleep(time.Millisecond)
		}
		opts.After = page.Next
	}
}

func testReadAll(t *testing.T, s Store) {
	var want []eventstore.EventData
	for i := range 5 {
		evs := events(3, "e")
		mustAppend(t, s, fmt.Sprintf("all-%d", i), eventstore.NoStream, evs...)
		want = append(want, evs...)
	}
	got := readWholeLog(t, s, eventstore.ReadAllOptions{Limit: 4})
	if len(got) != len(want) {
		t.Fatalf("read %d events from $all, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Errorf("$all[%d] = %s, want %s (append order)", i, got[i].ID, want[i].ID)
		}
		if i > 0 && got[i].Position <= got[i-1].Position {
			t.Errorf("$all[%d] position %d not after %d", i, got[i].Position, got[i-1].Position)
		}
	}
	// After the last position: nothing, and Next does not go back.
	page, err := s.ReadAll(ctxFor(t), eventstore.ReadAllOptions{After: got[len(got)-1].Position})
	if err != nil || len(page.Events) != 0 || page.Next < got[len(got)-1].Position {
		t.Errorf("read after the end = %d events, next %d, err %v", len(page.Events), page.Next, err)
	}
	// From the middle.
	page, err = s.ReadAll(ctxFor(t), eventstore.ReadAllOptions{After: got[6].Position, Limit: 2})
	if err != nil || len(page.Events) != 2 || page.Events[0].ID != want[7].ID || page.Next != page.Events[1].Position {
		t.Errorf("read after position of event 6 = %+v, %v", page, err)
	}
}

func testReadAllFilters(t *testing.T, s Store) {
	mustAppend(t, s, "lead-1", eventstore.NoStream, Event("lead-initialized"), Event("contacted"))
	mustAppend(t, s, "order-1", eventstore.NoStream, Event("order-submitted"), Event("contacted"))
	mustAppend(t, s, "lead-2", eventstore.NoStream, Event("lead-initialized"))
	mustAppend(t, s, "leadership", eventstore.NoStream, Event("contacted"))
	count := func(opts eventstore.ReadAllOptions) []string {
		var out []string
		for _, e := range readWholeLog(t, s, opts) {
			out = append(out, e.StreamID+"/"+e.Type)
		}
		return out
	}
	cases := []struct {
		opts eventstore.ReadAllOptions
		want []string
	}{
		{eventstore.ReadAllOptions{Categories: []string{"lead"}, Limit: 1}, []string{"lead-1/lead-initialized", "lead-1/contacted", "lead-2/lead-initialized"}},
		{eventstore.ReadAllOptions{Types: []string{"contacted"}}, []string{"lead-1/contacted", "order-1/contacted", "leadership/contacted"}},
		{eventstore.ReadAllOptions{Types: []string{"contacted"}, Categories: []string{"lead", "order"}}, []string{"lead-1/contacted", "order-1/contacted"}},
		{eventstore.ReadAllOptions{Categories: []string{"leadership"}}, []string{"leadership/contacted"}},
		{eventstore.ReadAllOptions{Types: []string{"nothing"}}, nil},
	}
	for _, c := range cases {
		if got := count(c.opts); !reflect.DeepEqual(got, c.want) {
			t.Errorf("filter %+v = %v, want %v", c.opts, got, c.want)
		}
	}
	// A filtered read that finds nothing still moves Next past what it
	// scanned, so a follower does not scan it again.
	page, err := s.ReadAll(ctxFor(t), eventstore.ReadAllOptions{Types: []string{"nothing"}})
	if err != nil {
		t.Fatal(err)
	}
	all := readWholeLog(t, s, eventstore.ReadAllOptions{})
	if page.Next < all[len(all)-1].Position {
		t.Errorf("filtered read with no match: next %d, want at least the last position %d", page.Next, all[len(all)-1].Position)
	}
}

func next(t *testing.T, sub *eventstore.Subscription) eventstore.RecordedEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("subscription: %v", err)
	}
	return e
}

func testSubscribeToAll(t *testing.T, s Store) {
	before := events(3, "before")
	mustAppend(t, s, "sub-1", eventstore.NoStream, before...)
	// Long safety poll: live events must arrive by notification.
	sub := s.SubscribeToAll(eventstore.SubscribeAllOptions{SafetyPoll: time.Minute})
	for i := range before {
		if e := next(t, sub); e.ID != before[i].ID {
			t.Fatalf("catch-up event %d = %s, want %s", i, e.ID, before[i].ID)
		}
	}
	// Nothing more now.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if e, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("caught-up subscription returned %v, %v; want to wait", e.ID, err)
	}
	cancel()
	// Live.
	live := make(chan eventstore.RecordedEvent, 10)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range 2 {
			e, err := sub.Next(ctx)
			if err != nil {
				errc <- err
				return
			}
			live <- e
		}
		errc <- nil
	}()
	time.Sleep(50 * time.Millisecond)
	a := Event("live-a")
	b := Event("live-b")
	mustAppend(t, s, "sub-2", eventstore.NoStream, a)
	mustAppend(t, s, "sub-1", eventstore.Exact(2), b)
	if err := <-errc; err != nil {
		t.Fatalf("live: %v", err)
	}
	if e := <-live; e.ID != a.ID {
		t.Errorf("first live event %s, want %s", e.ID, a.ID)
	}
	last := <-live
	if last.ID != b.ID {
		t.Errorf("second live event %s, want %s", last.ID, b.ID)
	}
	// Resume after the third event: the two live ones again, nothing else.
	all := readWholeLog(t, s, eventstore.ReadAllOptions{})
	resumed := s.SubscribeToAll(eventstore.SubscribeAllOptions{After: all[2].Position})
	if e := next(t, resumed); e.ID != a.ID {
		t.Errorf("resumed first = %s, want %s", e.ID, a.ID)
	}
	if e := next(t, resumed); e.ID != b.ID {
		t.Errorf("resumed second = %s, want %s", e.ID, b.ID)
	}
	// Filtered.
	filtered := s.SubscribeToAll(eventstore.SubscribeAllOptions{Types: []string{"live-b"}})
	if e := next(t, filtered); e.ID != b.ID {
		t.Errorf("filtered = %s, want %s", e.ID, b.ID)
	}
}

func testSubscribeToStream(t *testing.T, s Store) {
	// Subscribing before the stream exists waits for it.
	sub := s.SubscribeToStream("watched-1", eventstore.SubscribeStreamOptions{SafetyPoll: time.Minute})
	got := make(chan eventstore.RecordedEvent, 10)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for range 3 {
			e, err := sub.Next(ctx)
			if err != nil {
				close(got)
				return
			}
			got <- e
		}
	}()
	time.Sleep(50 * time.Millisecond)
	mustAppend(t, s, "other-1", eventstore.NoStream, Event("noise"))
	first := Event("first")
	mustAppend(t, s, "watched-1", eventstore.NoStream, first)
	more := events(2, "more")
	mustAppend(t, s, "watched-1", eventstore.Exact(0), more...)
	for i, want := range append([]eventstore.EventData{first}, more...) {
		e, ok := <-got
		if !ok {
			t.Fatalf("subscription ended early at %d", i)
		}
		if e.ID != want.ID || e.Version != int64(i) || e.StreamID != "watched-1" {
			t.Errorf("event %d = %s v%d %s, want %s", i, e.ID, e.Version, e.StreamID, want.ID)
		}
	}
	// Resume from version 2.
	resumed := s.SubscribeToStream("watched-1", eventstore.SubscribeStreamOptions{From: 2})
	if e := next(t, resumed); e.Version != 2 || e.ID != more[1].ID {
		t.Errorf("resumed = v%d %s, want v2 %s", e.Version, e.ID, more[1].ID)
	}
}

// SeedSubject is the data subject of the seed's lead: their first name,
// last name and phone number are personal data.
const SeedSubject = "casey.davis@example.com"

// SeedSecrets are the seed's personal values: none may be found at rest
// (a pg_dump), in a log line or in an error once sealed.
var SeedSecrets = []string{"Casey", "David", "Davis", "555-2951", "555-8101", SeedSubject}

// SeedPersonalPaths returns the JSON Pointers of the seed's personal
// fields that an event's data holds (nil for none).
func SeedPersonalPaths(data []byte) []string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(data, &m)
	var paths []string
	for _, f := range []string{"first-name", "last-name", "phone-number"} {
		if _, ok := m[f]; ok {
			paths = append(paths, "/"+f)
		}
	}
	return paths
}
