package forgettable_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Another person's fields in a subject's export are restricted even once
// that person is erased: "forgotten" would tell the requester that the
// other party used their right to erasure.
func TestExportDoesNotRevealOthersErasure(t *testing.T) {
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	const morgan = "morgan@example.com"
	transfer := forgettable.Event{
		EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "transfer-made",
			Data: json.RawMessage(`{"from":"Casey Davis","to":"Morgan Lee","amount":10}`)},
		PersonalData: []forgettable.PersonalData{{Subject: casey, Paths: []string{"/from"}}, {Subject: morgan, Paths: []string{"/to"}}},
	}
	if _, err := s.Append(ctx, "ledger-1", eventstore.NoStream, transfer); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	var got []forgettable.RecordedEvent
	if err := s.ExportSubject(ctx, morgan, func(forgettable.Footprint) error { return nil }, func(ev forgettable.RecordedEvent) error {
		got = append(got, ev)
		return nil
	}); err != nil || len(got) != 1 {
		t.Fatalf("morgan's export: %d events, %v", len(got), err)
	}
	want := []forgettable.Redaction{{Path: "/from", Reason: forgettable.ReasonRestricted}}
	if !slices.Equal(got[0].Redacted, want) {
		t.Errorf("morgan's export redacts the other party as %v, want %v: it discloses that casey was erased", got[0].Redacted, want)
	}
}

// The access log row (the footprint) names what the export discloses, and
// nothing more is disclosed: an append whose transaction started earlier
// (a lower position) but commits after the footprint was taken is not
// exported (the footprint and the events come from one snapshot).
func TestExportDisclosesOnlyWhatTheFootprintRecorded(t *testing.T) {
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	const morgan = "morgan@example.com"
	moved := func(city string) forgettable.Event {
		return forgettable.Event{
			EventData:    eventstore.EventData{ID: eventstore.NewEventID(), Type: "moved", Data: json.RawMessage(`{"city":"` + city + `"}`)},
			PersonalData: []forgettable.PersonalData{{Subject: morgan, Paths: []string{"/city"}}},
		}
	}
	// Warm the subject's key so later appends do not wait on Vault.
	if _, err := s.Append(ctx, "person-0", eventstore.NoStream, moved("Paris")); err != nil {
		t.Fatal(err)
	}

	// T1 holds version 0 of person-late: the store's append to it takes
	// its transaction id (its position), then waits on the primary key.
	blocker, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Rollback(ctx)
	if _, err := blocker.Exec(ctx, `INSERT INTO events (position, stream_id, version, event_id, type, data, metadata, link)
		VALUES (pg_current_xact_id()::text::bigint << 16, 'person-late', 0, gen_random_uuid(), 'x', '{}', '{}', sha256(''))`); err != nil {
		t.Fatal(err)
	}
	late := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "person-late", eventstore.Any, moved("Lyon"))
		late <- err
	}()
	// Wait until the late append is blocked on T1's row lock.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late append never blocked")
		}
	}
	// A later transaction (higher position) commits first.
	if _, err := s.Append(ctx, "person-1", eventstore.NoStream, moved("Nice")); err != nil {
		t.Fatal(err)
	}

	var fp forgettable.Footprint
	var got []forgettable.RecordedEvent
	err = s.ExportSubject(ctx, morgan, func(f forgettable.Footprint) error {
		fp = f
		// The access is recorded; now the older transaction commits.
		if err := blocker.Rollback(ctx); err != nil {
			return err
		}
		return <-late
	}, func(ev forgettable.RecordedEvent) error {
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range got {
		if !slices.Contains(fp.Streams, ev.StreamID) {
			t.Errorf("exported an event of %s, which the recorded footprint %v does not name", ev.StreamID, fp.Streams)
		}
	}
	if len(got) != fp.Events {
		t.Errorf("exported %d events; the access log records %d", len(got), fp.Events)
	}
}

// An erasure that commits while an export runs, through another process,
// stops the export before anything of the subject's is handed over, though
// the export reads from a snapshot taken before the erasure and its key
// may still be cached.
func TestExportStopsAtAnErasureCommittedMeanwhile(t *testing.T) {
	e := newEnv(t)
	s := e.instance()
	other := e.instance()
	ctx := testenv.Context(t)
	seedLead(t, s, "lead-12")
	read(t, s, "lead-12", forgettable.Personal) // casey's key cached in s
	handed := 0
	var erasure forgettable.Erasure
	err := s.ExportSubject(ctx, casey, func(fp forgettable.Footprint) error {
		if fp.Events == 0 {
			t.Fatal("no events in the footprint")
		}
		var err error
		erasure, err = other.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"})
		return err
	}, func(forgettable.RecordedEvent) error {
		handed++
		return nil
	})
	var erased *forgettable.SubjectGoneError
	if !errors.As(err, &erased) || handed != 0 {
		t.Fatalf("export with an erasure committed meanwhile: %v after %d events; want SubjectErasedError before any", err, handed)
	}
	if erased.Erasure.ID != erasure.ID { // the 410's erasureId
		t.Errorf("the error names erasure %x, want %x", erased.Erasure.ID, erasure.ID)
	}
}
