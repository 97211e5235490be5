package forgettable_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// A subject's access export holds every event with their data, across
// streams, with their fields decrypted and nobody else's; the access is
// recorded before anything is handed over; after the erasure there is
// nothing to export.
func TestExportSubject(t *testing.T) {
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	seedLead(t, s, "lead-12")
	seedLead(t, s, "lead-13")
	const morgan = "morgan@example.com"
	transfer := forgettable.Event{
		EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "transfer-made",
			Data: json.RawMessage(`{"from":"Casey Davis","to":"Morgan Lee","amount":10}`)},
		PersonalData: []forgettable.PersonalData{{Subject: casey, Paths: []string{"/from"}}, {Subject: morgan, Paths: []string{"/to"}}},
	}
	if _, err := s.Append(ctx, "ledger-1", eventstore.NoStream, transfer); err != nil {
		t.Fatal(err)
	}
	moved := forgettable.Event{
		EventData:    eventstore.EventData{ID: eventstore.NewEventID(), Type: "moved", Data: json.RawMessage(`{"city":"Lyon"}`)},
		PersonalData: []forgettable.PersonalData{{Subject: morgan, Paths: []string{"/city"}}},
	}
	if _, err := s.Append(ctx, "person-2", eventstore.NoStream, moved); err != nil {
		t.Fatal(err)
	}

	var fp *forgettable.Footprint
	var got []forgettable.RecordedEvent
	err := s.ExportSubject(ctx, casey, func(f forgettable.Footprint) error {
		if len(got) > 0 {
			t.Error("events handed over before the access was recorded")
		}
		fp = &f
		return nil
	}, func(ev forgettable.RecordedEvent) error {
		got = append(got, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	var want int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE $1 = ANY (subject_refs)`, string(ref)).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if fp == nil || fp.Ref != ref || fp.Events != want || !slices.Equal(fp.Streams, []string{"lead-12", "lead-13", "ledger-1"}) {
		t.Fatalf("footprint %+v, want %s with %d events in lead-12, lead-13, ledger-1", fp, ref, want)
	}
	if len(got) != want {
		t.Fatalf("exported %d events, want %d", len(got), want)
	}
	var all strings.Builder
	for i, ev := range got {
		if i > 0 && ev.Position <= got[i-1].Position {
			t.Fatal("events out of position order")
		}
		all.Write(ev.Data)
	}
	for _, secret := range seedSecrets {
		if secret == casey {
			continue // the subject id, not in the data
		}
		if !strings.Contains(all.String(), secret) {
			t.Errorf("the export lacks casey's %q", secret)
		}
	}
	last := got[len(got)-1]
	if last.StreamID != "ledger-1" {
		t.Fatalf("last exported event is in %s, want the transfer", last.StreamID)
	}
	d := decode(t, last.Data)
	if d["from"] != "Casey Davis" || d["to"] != nil || d["amount"] != float64(10) {
		t.Errorf("transfer exported as %v: want casey's field open, morgan's null, the rest as is", d)
	}
	if !slices.Equal(last.Redacted, []forgettable.Redaction{{Path: "/to", Reason: forgettable.ReasonRestricted}}) {
		t.Errorf("transfer's redactions %v, want /to restricted", last.Redacted)
	}
	if strings.Contains(all.String(), "Morgan") || strings.Contains(all.String(), "Lyon") {
		t.Error("casey's export shows morgan's data")
	}

	// A failing record stops the export before anything is handed over.
	stop := errors.New("access log down")
	handed := 0
	if err := s.ExportSubject(ctx, morgan, func(forgettable.Footprint) error { return stop }, func(forgettable.RecordedEvent) error {
		handed++
		return nil
	}); !errors.Is(err, stop) || handed != 0 {
		t.Fatalf("with the record failing: %v after %d events", err, handed)
	}

	// Erased: nothing to export, and the erasure to show for it.
	erasure, err := s.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	handed = 0
	err = s.ExportSubject(ctx, casey, func(forgettable.Footprint) error { return nil }, func(forgettable.RecordedEvent) error {
		handed++
		return nil
	})
	var erased *forgettable.SubjectGoneError
	if !errors.As(err, &erased) || !errors.Is(err, keystore.ErrForgotten) || erased.Erasure.ID != erasure.ID || handed != 0 {
		t.Fatalf("export of an erased subject: %v (%d events), want its erasure %v", err, handed, erasure.ID)
	}
	// Morgan's export is untouched by casey's erasure: the transfer's
	// /from is now forgotten, /to open.
	got = got[:0]
	if err := s.ExportSubject(ctx, morgan, func(forgettable.Footprint) error { return nil }, func(ev forgettable.RecordedEvent) error {
		got = append(got, ev)
		return nil
	}); err != nil || len(got) != 2 {
		t.Fatalf("morgan's export: %d events, %v", len(got), err)
	}
	if d := decode(t, got[0].Data); d["to"] != "Morgan Lee" || d["from"] != nil {
		t.Errorf("transfer in morgan's export: %v", d)
	}
}
