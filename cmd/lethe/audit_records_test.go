package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// One append may carry up to MaxEventsPerAppend events, each with its own
// subject: the audit export's record of that append lists every subject
// reference, in one line far longer than 1 MiB. lethe verify --file must
// still read that export, which lethe audit export wrote itself.
func TestVerifyReadsAppendRecordsLongerThanOneMiB(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	const n = 17000 // 17,000 refs of 67 bytes: about 1.1 MiB in one line
	evs := make([]eventstore.EventData, n)
	for i := range evs {
		evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "contact-imported", Actor: "cli:importer",
			Data: json.RawMessage(`{"n": 1}`), SubjectRefs: []string{fmt.Sprintf("%064x", i+1)}}
	}
	if _, err := e.events.AppendToStream(e.ctx, "import-1", eventstore.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	out, code := e.cli("", "audit", "export", "--stream", "import-1")
	if code != 0 {
		t.Fatalf("audit export: exit %d\n%.2000s", code, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("audit export: %d lines, want one append record and the summary", len(lines))
	}
	var rec wire.AuditRecord
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || len(rec.SubjectRefs) != n || len(lines[0]) <= 1<<20 {
		t.Fatalf("append record: %v, %d refs, %d bytes; want %d refs in more than 1 MiB", err, len(rec.SubjectRefs), len(lines[0]), n)
	}
	f := writeFile(t, "audit.ndjson", []byte(out))
	if out, code := e.cli("", "verify", "--file", f); code != 0 || !strings.Contains(out, "1 records, SHA-256 matches; 1 quoted links checked against the store: verified") {
		t.Errorf("verify --file of an export lethe wrote: exit %d, want 0\n%.2000s", code, out)
	}
}

// One append's events are one record only while they are one actor's
// consecutive events: an append whose events name different actors (the
// Go API lets each event name its own) must not be credited to the first
// event's actor, and an actor filter must not report versions that
// another actor appended.
func TestAuditAppendRecordsGroupByActor(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	evs := make([]eventstore.EventData, 3)
	for i, actor := range []string{"cli:alice", "cli:bob", "cli:alice"} {
		evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "thing-happened", Actor: actor, Data: json.RawMessage(`{}`)}
	}
	if _, err := e.events.AppendToStream(e.ctx, "mixed-1", eventstore.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	type span struct {
		actor    string
		from, to int64
	}
	records := func(args ...string) []span {
		t.Helper()
		out, code := e.cli("", append([]string{"audit", "export", "--kind", "append"}, args...)...)
		if code != 0 {
			t.Fatalf("audit export %v: exit %d\n%s", args, code, out)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		var got []span
		for _, l := range lines[:len(lines)-1] {
			var r wire.AuditRecord
			if err := json.Unmarshal([]byte(l), &r); err != nil || r.FromVersion == nil || r.ToVersion == nil {
				t.Fatalf("record %s: %v", l, err)
			}
			got = append(got, span{r.Actor, *r.FromVersion, *r.ToVersion})
		}
		return got
	}
	if got, want := records(), []span{{"cli:alice", 0, 0}, {"cli:bob", 1, 1}, {"cli:alice", 2, 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("append records %v, want %v", got, want)
	}
	if got, want := records("--actor", "cli:alice"), []span{{"cli:alice", 0, 0}, {"cli:alice", 2, 2}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("append records of cli:alice %v, want %v", got, want)
	}
}
