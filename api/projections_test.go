package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

func ptr[T any](v T) *T { return &v }

func stateMap(t *testing.T, s wire.StreamState) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(s.State, &m); err != nil {
		t.Fatalf("state %s: %v", s.State, err)
	}
	return m
}

// The seed's lead at every version and at times between its events, its
// field history, for a pii-reader, a reader and after the erasure.
func TestStateAndHistory(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	// One append per event: each gets its own recording time.
	var times []time.Time
	for i, e := range seedLead() {
		res, err := tk.writer.Append(ctx, "lead-12", wire.Exact(int64(i)-1), e)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tk.reader.ReadStream(ctx, "lead-12", client.ReadOptions{From: client.Version(res.FirstVersion), Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, p.Events[0].RecordedAt)
		time.Sleep(5 * time.Millisecond)
	}

	want := []map[string]any{
		{"first-name": "Casey", "last-name": "David", "phone-number": "555-2951"},
		{"first-name": "Casey", "last-name": "David", "phone-number": "555-2951", "timestamp": "2020-05-20T12:32:08.24Z"},
		{"first-name": "Casey", "last-name": "David", "phone-number": "555-2951", "followup-on": "2020-05-27T12:00:00.00Z"},
		{"first-name": "Casey", "last-name": "Davis", "phone-number": "555-8101", "followup-on": "2020-05-27T12:00:00.00Z"},
		{"last-name": "Davis", "timestamp": "2020-05-27T12:02:12.51Z"},
		{"last-name": "Davis", "payment-deadline": "2020-05-30T12:02:12.51Z"},
		{"first-name": "Casey", "last-name": "Davis", "phone-number": "555-8101", "followup-on": "2020-05-27T12:00:00.00Z", "status": "converted"},
	}
	check := func(s wire.StreamState, err error, version int) {
		t.Helper()
		if err != nil || s.Version != int64(version) || s.StreamID != "lead-12" {
			t.Fatalf("state at %d = %+v, %v", version, s, err)
		}
		m := stateMap(t, s)
		for k, v := range want[version] {
			if m[k] != v {
				t.Errorf("state at %d: %s = %v, want %v (%v)", version, k, m[k], v, m)
			}
		}
		if len(s.EventTypes) == 0 || s.UpdatedAt == nil || !s.UpdatedAt.Equal(times[version]) {
			t.Errorf("state at %d: types %v, updated %v", version, s.EventTypes, s.UpdatedAt)
		}
	}
	for v := range 7 {
		s, err := tk.pii.State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(v))})
		check(s, err, v)
		// Just before the next event was recorded, the state is this
		// version's.
		at := times[v]
		if v < 6 {
			at = times[v].Add(times[v+1].Sub(times[v]) / 2)
		}
		s, err = tk.pii.State(ctx, "lead-12", client.StateOptions{At: &at})
		check(s, err, v)
	}
	// The loads above saved snapshots (every 3 events in these tests):
	// sealed, without a personal value in the clear.
	var snaps, clear int
	if err := d.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE snapshot::text ~ '(Casey|David|Davis|555-)') FROM snapshots WHERE stream_id = 'lead-12'`).Scan(&snaps, &clear); err != nil || snaps == 0 || clear != 0 {
		t.Errorf("snapshots: %d, %d with personal data in the clear (%v)", snaps, clear, err)
	}
	before, err := tk.pii.State(ctx, "lead-12", client.StateOptions{At: ptr(times[0].Add(-time.Second))})
	if err != nil || before.Version != -1 || string(before.State) != "{}" || before.UpdatedAt != nil {
		t.Errorf("state before the first event = %+v, %v", before, err)
	}
	if _, err := tk.pii.State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(7))}); problemType(err) != "version-not-found" {
		t.Errorf("version 7 = %v", err)
	}
	if _, err := tk.pii.State(ctx, "lead-99", client.StateOptions{}); problemType(err) != "stream-not-found" {
		t.Errorf("unknown stream = %v", err)
	}

	h, err := tk.pii.History(ctx, "lead-12", client.StateOptions{})
	if err != nil || h.Version != 6 {
		t.Fatalf("history = %+v, %v", h, err)
	}
	var names []string
	for _, v := range h.Fields["/last-name"] {
		names = append(names, string(v.Value)+fmt.Sprint("@", v.Version))
	}
	if fmt.Sprint(names) != `["David"@0 "Davis"@3]` || len(h.Fields["/phone-number"]) != 2 || len(h.Redacted) != 0 {
		t.Errorf("history of last names %v, phones %v", names, h.Fields["/phone-number"])
	}

	// A reader sees the same shapes, personal fields restricted.
	rs, err := tk.reader.State(ctx, "lead-12", client.StateOptions{})
	if m := stateMap(t, rs); err != nil || m["first-name"] != nil || m["status"] != "converted" || len(rs.Redacted) != 3 || rs.Redacted[0].Reason != wire.ReasonRestricted {
		t.Errorf("reader state = %s %v, %v", rs.State, rs.Redacted, err)
	}

	if _, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	fs, err := tk.pii.State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(2))})
	if m := stateMap(t, fs); err != nil || m["first-name"] != nil || m["followup-on"] != "2020-05-27T12:00:00.00Z" ||
		len(fs.Redacted) != 3 || fs.Redacted[0] != (wire.FieldRedaction{Path: "/first-name", Reason: "forgotten", Version: 0}) {
		t.Errorf("state at 2 after erase = %s %v, %v", fs.State, fs.Redacted, err)
	}
	fh, err := tk.pii.History(ctx, "lead-12", client.StateOptions{})
	if err != nil || len(fh.Redacted) != 6 {
		t.Fatalf("history after erase = %+v, %v", fh, err)
	}
	for _, v := range fh.Fields["/last-name"] {
		if string(v.Value) != "null" {
			t.Errorf("history after erase keeps %s", v.Value)
		}
	}
	if _, err := tk.pii.State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(1)), At: &times[0]}); problemType(err) != "invalid-query" {
		t.Errorf("version and at = %v", err)
	}
}

// A fold registered for a category replaces the generic one.
func TestRegisteredFolder(t *testing.T) {
	d := newDeployment(t)
	countTypes := projection.FolderFunc(func(state json.RawMessage, events []forgettable.RecordedEvent) (json.RawMessage, error) {
		counts := map[string]int{}
		if state != nil {
			if err := json.Unmarshal(state, &counts); err != nil {
				return nil, err
			}
		}
		for _, e := range events {
			counts[e.Type]++
		}
		return json.Marshal(counts)
	})
	hs := d.server(func(o *api.Options) { o.Folders = map[string]projection.Folder{"lead": countTypes} })
	tk := d.tokens(hs)
	ctx := context.Background()
	appendSeedLead(t, tk.writer)
	s, err := tk.reader.State(ctx, "lead-12", client.StateOptions{})
	if m := stateMap(t, s); err != nil || m["contacted"] != float64(2) || m["lead-initialized"] != float64(1) || s.Version != 6 || len(s.Redacted) != 6 {
		t.Errorf("registered fold = %s %v, %v", s.State, s.Redacted, err)
	}
}

// eventually retries check until it passes (testenv.Eventually): the
// projections and the listeners work asynchronously.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	testenv.Eventually(t, what, 30*time.Second, check)
}

// The built-in read models through HTTP: the lookup index finds the lead
// by an old phone number until casey is erased; the funnel counts; status
// and rebuild.
func TestReadModelsThroughTheAPI(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	eventually(t, "lookup by the old phone", func() error {
		s, err := tk.pii.Lookup(ctx, "lead", "/phone-number", "555-2951")
		if err != nil || fmt.Sprint(s) != "[lead-12]" {
			return fmt.Errorf("%v, %v", s, err)
		}
		return nil
	})
	if _, err := tk.reader.Lookup(ctx, "lead", "/phone-number", "555-2951"); problemType(err) != "forbidden" {
		t.Errorf("lookup as a reader = %v, want forbidden", err)
	}
	eventually(t, "analytics", func() error {
		a, err := tk.reader.Analytics(ctx, "lead")
		if err != nil || a.Totals["contacted"] != 2 || a.Totals["payment-confirmed"] != 1 || len(a.Days) != 1 {
			return fmt.Errorf("%+v, %v", a, err)
		}
		return nil
	})
	if _, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lookup after the erasure", func() error {
		for _, v := range [][2]string{{"/phone-number", "555-2951"}, {"/last-name", "Davis"}} {
			s, err := tk.pii.Lookup(ctx, "lead", v[0], v[1])
			if err != nil || len(s) != 0 {
				return fmt.Errorf("%s finds %v, %v", v[1], s, err)
			}
		}
		return nil
	})
	if err := tk.admin.RebuildProjection(ctx, "analytics", 0); err != nil {
		t.Fatal(err)
	}
	if err := tk.admin.RebuildProjection(ctx, "nope", 0); problemType(err) != "projection-not-found" {
		t.Errorf("rebuild of an unknown projection = %v", err)
	}
	eventually(t, "status after the rebuild", func() error {
		st, err := tk.admin.Projections(ctx)
		if err != nil || len(st) != 2 {
			return fmt.Errorf("%+v, %v", st, err)
		}
		for _, s := range st {
			if s.RebuildPending || s.Lag != 0 || s.EventsApplied == 0 {
				return fmt.Errorf("%+v", s)
			}
		}
		a, err := tk.reader.Analytics(ctx, "lead")
		if err != nil || a.Totals["contacted"] != 2 {
			return fmt.Errorf("analytics after the rebuild: %+v, %v", a, err)
		}
		return nil
	})
}

// Upcasters registered with the server reshape old events on every read:
// the stream, the state, and redactions after the erasure.
func TestUpcastersOnRead(t *testing.T) {
	d := newDeployment(t)
	ups, err := projection.NewUpcasters(projection.Upcaster{Type: "contact-details-updated", From: 1,
		Up: func(data json.RawMessage, red []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(data, &m); err != nil {
				return nil, nil, err
			}
			m["phone"] = m["phone-number"]
			delete(m, "phone-number")
			out, err := json.Marshal(m)
			return out, projection.MoveRedactions(red, "/phone-number", "/phone"), err
		}})
	if err != nil {
		t.Fatal(err)
	}
	hs := d.server(func(o *api.Options) { o.Upcasters = ups })
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	p, err := tk.pii.ReadStream(ctx, "lead-12", client.ReadOptions{From: client.Version(3), Limit: 1})
	if err != nil || data(t, p.Events[0])["phone"] != "555-8101" || data(t, p.Events[0])["phone-number"] != nil || string(p.Events[0].Metadata) != `{"schemaVersion":2}` {
		t.Fatalf("upcast read = %s %s, %v", p.Events[0].Data, p.Events[0].Metadata, err)
	}
	if _, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	s, err := tk.pii.State(ctx, "lead-12", client.StateOptions{})
	if m := stateMap(t, s); err != nil || m["phone"] != nil {
		t.Fatalf("state = %s, %v", s.State, err)
	}
	found := false
	for _, r := range s.Redacted {
		found = found || (r.Path == "/phone" && r.Reason == "forgotten" && r.Version == 3)
	}
	if !found {
		t.Errorf("redactions %v: the moved field lost its redaction", s.Redacted)
	}
}
