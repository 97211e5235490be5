package forgettable_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	fpg "github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/vault"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one deployment: a database and a Vault prefix. Instances made from
// it stand for server processes sharing them.
type env struct {
	dbURL  string
	mount  string
	prefix string
	t      *testing.T
	vault  app.VaultConfig
}

func newEnv(t *testing.T) *env {
	t.Helper()
	client, mount, prefix := testenv.LetheVault(t)
	return &env{dbURL: testenv.MigratedDatabase(t), mount: mount, prefix: prefix, t: t,
		vault: app.VaultConfig{Client: client, Mount: mount, Prefix: prefix}}
}

// instance is one "process", assembled as `lethe serve` assembles it
// (app.Open, not run): its own pool, caches and key store.
type instance struct {
	*forgettable.Store
	app    *app.App
	pool   *pgxpool.Pool
	keys   *vault.Store
	events *espg.Store
}

func (e *env) instance() *instance {
	e.t.Helper()
	a, err := app.Open(testenv.Context(e.t), app.Config{Logger: slog.New(slog.DiscardHandler), Pool: testenv.Pool(e.t, e.dbURL), Vault: e.vault})
	if err != nil {
		e.t.Fatalf("open lethe: %v", err)
	}
	e.t.Cleanup(a.Close)
	return &instance{Store: a.Store(), app: a, pool: a.Pool(), keys: a.Vault(), events: a.Events()}
}

const casey = eventstoretest.SeedSubject

// seedLead appends the seed's lead stream, the name and phone fields
// declared as casey's personal data.
func seedLead(t *testing.T, s *instance, stream string) {
	t.Helper()
	var events []forgettable.Event
	for _, e := range eventstoretest.SeedLeadEvents() {
		fe := forgettable.Event{EventData: e}
		if paths := eventstoretest.SeedPersonalPaths(e.Data); len(paths) > 0 {
			fe.PersonalData = []forgettable.PersonalData{{Subject: casey, Paths: paths}}
		}
		events = append(events, fe)
	}
	if _, err := s.Append(testenv.Context(t), stream, eventstore.NoStream, events...); err != nil {
		t.Fatalf("append seed stream: %v", err)
	}
}

func read(t *testing.T, s *instance, stream string, access forgettable.Access) []forgettable.RecordedEvent {
	t.Helper()
	evs, err := s.ReadStream(testenv.Context(t), stream, eventstore.ReadStreamOptions{}, access)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return evs
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

var seedSecrets = eventstoretest.SeedSecrets

// The acceptance: the seed's stream with casey's data sealed; no
// plaintext at rest; reads decrypt; after the erase, everything personal is
// forgotten — for this process, another one with a warm cache, and a fresh
// one — while the story stays intact; Vault holds nothing of the key; new
// personal data for casey is refused.
func TestSeedLeadThroughErasure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.instance(), e.instance()
	ctx := testenv.Context(t)
	seedLead(t, a, "lead-12")
	// A second subject, whose data must survive casey's erasure.
	other := forgettable.Event{EventData: eventstoretest.Event("lead-initialized", "first-name", "Robin", "phone-number", "555-0000"),
		PersonalData: []forgettable.PersonalData{{Subject: "robin@example.com", Paths: []string{"/first-name", "/phone-number"}}}}
	if _, err := a.Append(ctx, "lead-13", eventstore.NoStream, other); err != nil {
		t.Fatal(err)
	}

	dump := testenv.PGDump(t, e.dbURL)
	for _, s := range append(seedSecrets, "Robin", "555-0000", "robin@example.com") {
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("pg_dump contains %q", s)
		}
	}

	before := read(t, a, "lead-12", forgettable.Personal)
	for i, ev := range before {
		want := decode(t, []byte(eventstoretest.SeedLead[i].Data))
		if got := decode(t, ev.Data); !reflect.DeepEqual(got, want) || len(ev.Redacted) != 0 {
			t.Errorf("version %d = %v (redacted %v), want %v", i, got, ev.Redacted, want)
		}
	}
	// Warm b's cache.
	read(t, b, "lead-12", forgettable.Personal)

	// A restricted reader sees the structure, not the values.
	restricted := read(t, a, "lead-12", forgettable.Restricted)
	if d := decode(t, restricted[0].Data); d["first-name"] != nil || d["timestamp"] != "2020-05-20T09:52:55.95Z" {
		t.Errorf("restricted read = %v", d)
	}
	if want := []forgettable.Redaction{{"/first-name", "restricted"}, {"/last-name", "restricted"}, {"/phone-number", "restricted"}}; !reflect.DeepEqual(restricted[0].Redacted, want) {
		t.Errorf("restricted redactions = %v, want %v", restricted[0].Redacted, want)
	}

	receipt, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "test-admin", RequestID: "req-1", LegalBasis: "GDPR Art. 17(1)(a)"})
	if err != nil {
		t.Fatalf("forget: %v", err)
	}
	c := receipt.Completion
	if c == nil || !c.KeyExisted || !c.KeyVerifiedGone || c.EventsAffected != 2 || c.StreamsAffected != 1 {
		t.Fatalf("receipt = %+v %+v, want key destroyed and verified, 2 events in 1 stream", receipt, c)
	}
	again, err := b.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "someone-else"})
	if err != nil || again.ID != receipt.ID || again.Actor != "test-admin" {
		t.Fatalf("second erase = %+v, %v; want the first receipt", again, err)
	}

	fresh := e.instance()
	for name, inst := range map[string]*instance{"erasing process": a, "warm cache": b, "fresh process": fresh} {
		after := read(t, inst, "lead-12", forgettable.Personal)
		if len(after) != 7 {
			t.Fatalf("%s: %d events after erasure, want 7", name, len(after))
		}
		for i, ev := range after {
			got, want := decode(t, ev.Data), decode(t, []byte(eventstoretest.SeedLead[i].Data))
			var wantRedacted []forgettable.Redaction
			for _, f := range []string{"first-name", "last-name", "phone-number"} {
				if _, ok := want[f]; ok {
					want[f] = nil
					wantRedacted = append(wantRedacted, forgettable.Redaction{Path: "/" + f, Reason: "forgotten"})
				}
			}
			if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(ev.Redacted, wantRedacted) || ev.Type != eventstoretest.SeedLead[i].Type {
				t.Errorf("%s: version %d = %s %v (redacted %v), want %v (redacted %v)", name, i, ev.Type, got, ev.Redacted, want, wantRedacted)
			}
		}
		robin := read(t, inst, "lead-13", forgettable.Personal)
		if d := decode(t, robin[0].Data); d["first-name"] != "Robin" || d["phone-number"] != "555-0000" {
			t.Errorf("%s: the other subject's data = %v", name, d)
		}
	}

	// Vault has nothing left for the key.
	ref, err := a.keys.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	root := testenv.VaultRoot(t)
	if md, err := root.KVv2(e.mount).GetMetadata(ctx, e.prefix+"/subjects/"+string(ref)); err == nil {
		t.Errorf("Vault still has metadata for the key: %+v", md)
	}

	// New personal data for casey is refused; data without it still goes in.
	_, err = b.Append(ctx, "lead-12", eventstore.Any, forgettable.Event{
		EventData:    eventstoretest.Event("contact-details-updated", "phone-number", "555-9999"),
		PersonalData: []forgettable.PersonalData{{Subject: casey, Paths: []string{"/phone-number"}}}})
	if !errors.Is(err, keystore.ErrForgotten) {
		t.Errorf("append for an erased subject: err = %v, want ErrForgotten", err)
	}
	if _, err := b.Append(ctx, "lead-12", eventstore.Any, forgettable.Event{EventData: eventstoretest.Event("contacted")}); err != nil {
		t.Errorf("append without personal data after erasure: %v", err)
	}
	// The erasure's records, without personal data, are in the system
	// stream: its start (the fence), then its completion.
	recs := read(t, a, forgettable.ErasedStreamID, forgettable.Restricted)
	if len(recs) != 2 || recs[0].Type != forgettable.SubjectFencedType || recs[1].Type != "subject-erased" ||
		bytes.Contains(recs[0].Data, []byte("casey")) || bytes.Contains(recs[1].Data, []byte("casey")) {
		t.Errorf("erasure records: %d, %s then %s", len(recs), recs[0].Type, recs[len(recs)-1].Type)
	}
	if dump := testenv.PGDump(t, e.dbURL); bytes.Contains(dump, []byte("casey")) || bytes.Contains(dump, []byte("Casey")) {
		t.Errorf("pg_dump after erasure contains casey's data")
	}
}

// Vault down: appends with personal data fail with ErrUnavailable and write
// nothing; reads of uncached subjects fail the same way (never a
// redaction); appends without personal data still work.
func TestVaultDownFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())
	client := testenv.VaultClient(t, v.Addr(), v.RootToken())
	e := &env{dbURL: testenv.MigratedDatabase(t), t: t, vault: app.VaultConfig{Client: client}}
	writer := e.instance()
	seedLead(t, writer, "lead-12")
	reader := e.instance() // cold cache, but the ref secret loaded below
	if _, err := reader.keys.SubjectRef(ctx, "warm-up"); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	_, err = writer.Append(ctx, "lead-99", eventstore.NoStream, forgettable.Event{
		EventData:    eventstoretest.Event("lead-initialized", "first-name", "Alex"),
		PersonalData: []forgettable.PersonalData{{Subject: "alex@example.com", Paths: []string{"/first-name"}}}})
	if !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("append with personal data, Vault down: err = %v, want ErrUnavailable", err)
	}
	if _, err := writer.Events().StreamVersion(ctx, "lead-99"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("a refused append wrote something: %v", err)
	}
	if _, err := reader.ReadStream(ctx, "lead-12", eventstore.ReadStreamOptions{}, forgettable.Personal); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("read of an uncached subject, Vault down: err = %v, want ErrUnavailable", err)
	}
	// A subject export: the keys cannot be had after the access is
	// recorded, and nothing is handed over as redacted.
	handed := 0
	if err := reader.ExportSubject(ctx, casey, func(forgettable.Footprint) error { return nil }, func(forgettable.RecordedEvent) error {
		handed++
		return nil
	}); !errors.Is(err, keystore.ErrUnavailable) || handed != 0 {
		t.Errorf("subject export, Vault down: err = %v after %d events, want ErrUnavailable before any", err, handed)
	}
	if _, err := writer.Append(ctx, "lead-98", eventstore.NoStream, forgettable.Event{EventData: eventstoretest.Event("contacted")}); err != nil {
		t.Errorf("append without personal data, Vault down: %v", err)
	}
	// A restricted read needs no key.
	if _, err := reader.ReadStream(ctx, "lead-12", eventstore.ReadStreamOptions{}, forgettable.Restricted); err != nil {
		t.Errorf("restricted read, Vault down: %v", err)
	}
}

// 8 goroutines in each of 2 processes write the first events of one new
// subject at once: exactly one key is created, and every event decrypts.
func TestFirstKeyCreatedOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	insts := []*instance{e.instance(), e.instance()}
	ctx := testenv.Context(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for p, inst := range insts {
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := inst.Append(ctx, "race-"+string(rune('a'+p))+string(rune('a'+g)), eventstore.NoStream, forgettable.Event{
					EventData:    eventstoretest.Event("lead-initialized", "first-name", "Sam", "n", g),
					PersonalData: []forgettable.PersonalData{{Subject: "sam@example.com", Paths: []string{"/first-name"}}}})
				errs <- err
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	fresh := e.instance()
	var all []forgettable.RecordedEvent
	for after := int64(0); ; {
		page, err := fresh.ReadAll(ctx, eventstore.ReadAllOptions{After: after}, forgettable.Personal)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Events...)
		if len(page.Events) == 0 && !page.HeldBack {
			break
		}
		after = page.Next
		time.Sleep(time.Millisecond) // other tests' transactions may hold the horizon
	}
	if len(all) != 16 {
		t.Fatalf("%d events, want 16", len(all))
	}
	for _, ev := range all {
		if d := decode(t, ev.Data); d["first-name"] != "Sam" {
			t.Errorf("%s: %v", ev.StreamID, d)
		}
	}
	ref, _ := fresh.keys.SubjectRef(ctx, "sam@example.com")
	sec, err := testenv.VaultRoot(t).KVv2(e.mount).Get(ctx, e.prefix+"/subjects/"+string(ref))
	if err != nil || sec.VersionMetadata == nil || sec.VersionMetadata.Version != 1 {
		t.Fatalf("key secret = %+v, %v; want exactly one write (KV version 1)", sec, err)
	}
}

// Two processes: an erase through one is honoured by the other at once,
// although the other holds the key in its cache.
func TestEraseHonouredByOtherProcess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.instance(), e.instance()
	seedLead(t, a, "lead-12")
	read(t, b, "lead-12", forgettable.Personal) // b caches the key
	if _, err := a.Forget(testenv.Context(t), casey, forgettable.ErasureRequest{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	// No sleep: the ledger is read with the events.
	for _, ev := range read(t, b, "lead-12", forgettable.Personal) {
		for _, s := range seedSecrets {
			if bytes.Contains(ev.Data, []byte(s)) {
				t.Fatalf("process b served %q after the erase returned", s)
			}
		}
	}
}

func TestPoliciesHoldsReadmissionRotationAndRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)

	// A policy makes /phone-number personal data of lead-initialized.
	if err := s.PutPolicy(ctx, forgettable.Policy{EventType: "lead-initialized", Paths: []string{"/phone-number", "/first-name"}, UpdatedBy: "admin"}, ""); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, "lead-1", eventstore.NoStream, forgettable.Event{EventData: eventstoretest.Event("lead-initialized", "phone-number", "555-1234")})
	if !errors.Is(err, forgettable.ErrUndeclaredPersonalData) {
		t.Fatalf("policy without subject: err = %v, want ErrUndeclaredPersonalData", err)
	}
	ev := forgettable.Event{EventData: eventstoretest.Event("lead-initialized", "phone-number", "555-1234", "first-name", "Kim"),
		PersonalData: []forgettable.PersonalData{{Subject: "kim@example.com"}}}
	if _, err := s.Append(ctx, "lead-1", eventstore.NoStream, ev); err != nil {
		t.Fatalf("policy with the subject declared: %v", err)
	}
	// Retrying the same append is idempotent, sealed data and all.
	res, err := s.Append(ctx, "lead-1", eventstore.NoStream, ev)
	if err != nil || !res.Duplicate {
		t.Fatalf("retry = %+v, %v; want a duplicate", res, err)
	}
	raw, _ := s.Events().ReadStream(ctx, "lead-1", eventstore.ReadStreamOptions{})
	if bytes.Contains(raw[0].Data, []byte("555-1234")) || bytes.Contains(raw[0].Data, []byte("Kim")) {
		t.Fatalf("policy fields stored in the clear: %s", raw[0].Data)
	}

	// Rotation: new events use version 2; old ones still open.
	if v, err := s.RotateKey(ctx, "kim@example.com", "test", ""); err != nil || v != 2 {
		t.Fatalf("rotate = %d, %v", v, err)
	}
	fresh := e.instance()
	if _, err := fresh.Append(ctx, "lead-1", eventstore.Exact(0), forgettable.Event{EventData: eventstoretest.Event("contact-details-updated", "phone-number", "555-5678"),
		PersonalData: []forgettable.PersonalData{{Subject: "kim@example.com", Paths: []string{"/phone-number"}}}}); err != nil {
		t.Fatal(err)
	}
	evs := read(t, fresh, "lead-1", forgettable.Personal)
	if d0, d1 := decode(t, evs[0].Data), decode(t, evs[1].Data); d0["phone-number"] != "555-1234" || d1["phone-number"] != "555-5678" {
		t.Fatalf("after rotation: %v %v", d0, d1)
	}

	// A legal hold blocks erasure until released.
	if err := s.SetHold(ctx, "kim@example.com", true, "legal", "litigation 42"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forget(ctx, "kim@example.com", forgettable.ErasureRequest{Actor: "admin"}); !errors.Is(err, forgettable.ErrLegalHold) {
		t.Fatalf("erase under hold: err = %v, want ErrLegalHold", err)
	}
	if err := s.SetHold(ctx, "kim@example.com", false, "legal", "settled"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Forget(ctx, "kim@example.com", forgettable.ErasureRequest{Actor: "admin"}); err != nil {
		t.Fatalf("erase after release: %v", err)
	}

	// Re-admission: a new key; old data stays forgotten, new data reads.
	if _, err := s.Readmit(ctx, "unknown@example.com", "admin", "x"); !errors.Is(err, forgettable.ErrNotErased) {
		t.Errorf("readmit a subject never erased: %v", err)
	}
	if _, err := s.Readmit(ctx, "kim@example.com", "admin", "came back"); err != nil {
		t.Fatal(err)
	}
	other := e.instance() // learns the successor from the ledger
	if _, err := other.Append(ctx, "lead-1", eventstore.Any, forgettable.Event{EventData: eventstoretest.Event("contact-details-updated", "phone-number", "555-0001"),
		PersonalData: []forgettable.PersonalData{{Subject: "kim@example.com", Paths: []string{"/phone-number"}}}}); err != nil {
		t.Fatalf("append after re-admission: %v", err)
	}
	evs = read(t, other, "lead-1", forgettable.Personal)
	if len(evs) != 3 || len(evs[0].Redacted) != 2 || len(evs[1].Redacted) != 1 || len(evs[2].Redacted) != 0 || decode(t, evs[2].Data)["phone-number"] != "555-0001" {
		t.Fatalf("after re-admission: %+v", evs)
	}
}

// A sealed field copied into another event fails to open: an error, not a
// redaction and not someone else's plaintext.
func TestMovedCiphertextDoesNotOpen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	seedLead(t, s, "lead-12")
	// Behind Lethe's back, as the superuser: copy event 0's data into
	// event 3 (same subject, same key).
	_, err := s.pool.Exec(ctx, `ALTER TABLE events DISABLE TRIGGER events_append_only;
UPDATE events SET data = (SELECT data FROM events WHERE stream_id = 'lead-12' AND version = 0) WHERE stream_id = 'lead-12' AND version = 3;
ALTER TABLE events ENABLE TRIGGER events_append_only`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.ReadStream(ctx, "lead-12", eventstore.ReadStreamOptions{}, forgettable.Personal)
	if !errors.Is(err, forgettable.ErrTampered) {
		t.Fatalf("read of a moved ciphertext: err = %v, want ErrTampered", err)
	}
}

// Every process drops an erased subject's cached key when the erasure is
// announced (LISTEN/NOTIFY), on top of the ledger check of every read.
func TestErasureDropsCachedKeysEverywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.instance(), e.instance()
	ctx, cancel := context.WithCancel(testenv.Context(t))
	defer cancel()
	ready := make(chan struct{}, 1)
	go b.app.Ledger().Listen(ctx, slog.Default(), b.keys.Invalidate, b.PolicyChanged, func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	<-ready
	seedLead(t, a, "lead-12")
	read(t, b, "lead-12", forgettable.Personal) // b caches casey's key
	ref, err := b.keys.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.keys.Key(ctx, ref, 1); err != nil {
		t.Fatalf("cached key: %v", err)
	}
	if _, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.keys.Key(ctx, ref, 1)
		if errors.Is(err, keystore.ErrKeyNotFound) {
			return // dropped from b's cache, and gone from Vault
		}
		if time.Now().After(deadline) {
			t.Fatalf("process b still has the erased key 5 s after the erase: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A long stream read in one page goes through the streaming path (rows
// opened while they arrive): with a cold cache (every event deferred to
// the batch fetch), a warm one, two key versions and two subjects, one of
// them erased.
func TestLongStreamReadStreaming(t *testing.T) {
	e := newEnv(t)
	w := e.instance()
	ctx := testenv.Context(t)
	const n = 700
	batch := func(from, count int) []forgettable.Event {
		var evs []forgettable.Event
		for i := from; i < from+count; i++ {
			subject := "ann@example.com"
			if i%2 == 1 {
				subject = "bob@example.com"
			}
			evs = append(evs, forgettable.Event{
				EventData:    eventstore.EventData{ID: eventstore.NewEventID(), Type: "t", Data: json.RawMessage(fmt.Sprintf(`{"name":"name-%d","n":%d}`, i, i))},
				PersonalData: []forgettable.PersonalData{{Subject: subject, Paths: []string{"/name"}}},
			})
		}
		return evs
	}
	if _, err := w.Append(ctx, "long-1", eventstore.NoStream, batch(0, n/2)...); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RotateKey(ctx, "ann@example.com", "test", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Append(ctx, "long-1", eventstore.Any, batch(n/2, n/2)...); err != nil {
		t.Fatal(err)
	}
	check := func(s *instance, annForgotten bool) {
		t.Helper()
		evs, err := s.ReadStream(ctx, "long-1", eventstore.ReadStreamOptions{}, forgettable.Personal)
		if err != nil || len(evs) != n {
			t.Fatalf("read: %d events, %v", len(evs), err)
		}
		for i, ev := range evs {
			m := decode(t, ev.Data)
			if m["n"] != float64(i) || ev.Version != int64(i) {
				t.Fatalf("event %d out of place: %v", i, m)
			}
			if annForgotten && i%2 == 0 {
				if m["name"] != nil || len(ev.Redacted) != 1 || ev.Redacted[0].Reason != forgettable.ReasonForgotten {
					t.Fatalf("event %d: %v %v, want forgotten", i, m, ev.Redacted)
				}
				continue
			}
			if m["name"] != fmt.Sprintf("name-%d", i) || len(ev.Redacted) != 0 {
				t.Fatalf("event %d: %v %v", i, m, ev.Redacted)
			}
		}
	}
	check(e.instance(), false) // cold
	warm := e.instance()
	check(warm, false)
	check(warm, false) // warm
	if _, err := w.Forget(ctx, "ann@example.com", forgettable.ErasureRequest{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	check(warm, true)
	check(e.instance(), true)
}

// A retried append sealed under a newer key version (after a rotation)
// is still recognised as the same append; a retry that says something
// else is still refused.
func TestRetryAfterRotation(t *testing.T) {
	e := newEnv(t)
	s := e.instance()
	ctx := testenv.Context(t)
	ev := forgettable.Event{EventData: eventstore.EventData{ID: eventstore.NewEventID(), Type: "t", Data: json.RawMessage(`{"name":"Ann","n":1}`)},
		PersonalData: []forgettable.PersonalData{{Subject: "ann@example.com", Paths: []string{"/name"}}}}
	first, err := s.Append(ctx, "retry-1", eventstore.NoStream, ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey(ctx, "ann@example.com", "test", ""); err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(ctx, "retry-1", eventstore.NoStream, ev)
	if err != nil || !again.Duplicate || again.FirstPosition != first.FirstPosition {
		t.Fatalf("retry after rotation = %+v, %v", again, err)
	}
	other := ev
	other.Data = json.RawMessage(`{"name":"Bob","n":1}`)
	if _, err := s.Append(ctx, "retry-1", eventstore.NoStream, other); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("a different event under the same id = %v", err)
	}
	plain := ev
	plain.PersonalData = nil
	if _, err := s.Append(ctx, "retry-1", eventstore.NoStream, plain); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("the same data, not declared personal = %v", err)
	}
}

// completeFailsOnce is a real ledger whose first CompleteErasure fails, as
// when PostgreSQL becomes unreachable for an erasure's last step: fault
// injection around the real ledger, not a stand-in for it.
type completeFailsOnce struct {
	*fpg.Ledger
	mu     sync.Mutex
	failed bool
}

func (l *completeFailsOnce) CompleteErasure(ctx context.Context, id [16]byte, c forgettable.ErasureCompletion) error {
	l.mu.Lock()
	first := !l.failed
	l.failed = true
	l.mu.Unlock()
	if first {
		return errors.New("record erasure completion: connection refused (injected)")
	}
	return l.Ledger.CompleteErasure(ctx, id, c)
}

// An erasure whose first attempt destroyed the key but could not record
// its completion is finished by erasing again. That call finds no key, and
// its receipt says it resumed the erasure, so that keyExisted: false does
// not read as "the person never had a key". A normal erasure does not.
func TestResumedErasureSaysSo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.instance()
	ctx := testenv.Context(t)
	seedLead(t, a, "lead-12")
	robin := forgettable.Event{EventData: eventstoretest.Event("lead-initialized", "first-name", "Robin"),
		PersonalData: []forgettable.PersonalData{{Subject: "robin@example.com", Paths: []string{"/first-name"}}}}
	if _, err := a.Append(ctx, "lead-13", eventstore.NoStream, robin); err != nil {
		t.Fatal(err)
	}

	// The first attempt: fenced, key destroyed, erased record appended,
	// then the completion fails.
	flaky := forgettable.New(a.events, a.keys, &completeFailsOnce{Ledger: a.app.Ledger()}, a.app.Policies(), forgettable.Options{})
	req := forgettable.ErasureRequest{Actor: "dpo", RequestID: "DSR-7"}
	if _, err := flaky.Forget(ctx, casey, req); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("first attempt: err = %v, want the injected failure", err)
	}
	pending, ok, err := a.Erasure(ctx, casey)
	if err != nil || !ok || pending.Completion != nil {
		t.Fatalf("after the interrupted attempt: %+v, %v, %v; want a pending erasure", pending, ok, err)
	}
	root := testenv.VaultRoot(t)
	if md, err := root.KVv2(e.mount).GetMetadata(ctx, e.prefix+"/subjects/"+string(pending.Ref)); err == nil {
		t.Fatalf("the first attempt left the key in Vault: %+v", md)
	}
	// The log keeps what the first attempt found: the key existed.
	var first map[string]any
	for _, r := range read(t, a, forgettable.ErasedStreamID, forgettable.Restricted) {
		if r.ID == eventstore.EventID(pending.ID) {
			first = decode(t, r.Data)
		}
	}
	if first["keyExisted"] != true || first["resumed"] != nil {
		t.Errorf("subject-erased record of the first attempt = %v, want keyExisted true, not resumed", first)
	}

	// Erasing again finishes it: no key left to destroy, and it says it
	// resumed an erasure.
	done, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "someone-else"})
	if err != nil {
		t.Fatalf("second attempt: %v", err)
	}
	c := done.Completion
	if done.ID != pending.ID || done.Actor != "dpo" || c == nil || !c.Resumed || !c.KeyVerifiedGone || c.KeyExisted || c.VersionsDestroyed != 0 || c.EventsAffected != 2 {
		t.Fatalf("resumed erasure = %+v, completion %+v; want resumed, key verified gone", done, c)
	}
	stored, _, err := e.instance().Erasure(ctx, casey)
	if err != nil || stored.Completion == nil || !reflect.DeepEqual(*stored.Completion, *c) {
		t.Errorf("stored completion = %+v, %v; want %+v", stored.Completion, err, c)
	}
	if b, err := json.Marshal(api.ErasureSummary(done, time.Now())); err != nil || !bytes.Contains(b, []byte(`"keyVerifiedGone":true,"streamsAffected":1,"eventsAffected":2,"resumed":true}`)) {
		t.Errorf("resumed receipt = %s, %v", b, err)
	}

	// A normal erasure is not resumed, and its receipt does not mention it.
	normal, err := a.Forget(ctx, "robin@example.com", req)
	if err != nil {
		t.Fatal(err)
	}
	if c := normal.Completion; c == nil || c.Resumed || !c.KeyExisted || c.VersionsDestroyed != 1 || !c.KeyVerifiedGone {
		t.Errorf("normal erasure completion = %+v", c)
	}
	if b, err := json.Marshal(api.ErasureSummary(normal, time.Now())); err != nil || bytes.Contains(b, []byte("resumed")) {
		t.Errorf("normal receipt = %s, %v", b, err)
	}
}
