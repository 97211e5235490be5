package postgres_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/internal/testenv"
)

// jsonGen writes random JSON documents in the spellings jsonb rewrites:
// unsorted and duplicate keys, odd whitespace, every string escape,
// surrogate pairs, raw unicode, numbers with exponents, leading and
// trailing zeros, negative zero.
type jsonGen struct {
	r *rand.Rand
	b strings.Builder
}

var (
	genNumbers = []string{"0", "-0", "0.000", "1", "-1", "1.50", "100", "1e2", "1E+2", "1.0e-3", "-0.0E5", "12.3400", "5e-0",
		"123456789012345678901234567890", "0.000000000000000000001", "-98765.4321e-10", "2e300", "1e-300", "9007199254740993",
		"3.141592653589793238462643383279", "10E00003"}
	genStrings = []string{"", "plain", "caf\u00e9 \u2603 \U0001F600", `esc \" \\ \/ \b \f \n \r \t`, `\u00e9\u20AC\u0041`,
		`\ud83d\ude00 \uD834\uDD1E`, `\u001f\u007f`, "tab\\tand\\u0009", "<script>&amp;</script>", "\u00a0nbsp"}
	genKeys = []string{"a", "b", "A", "key", "k\\u0065y", "é", "\\u00e9", "z\\n", "", "a\\\"", "a#", "long-key-name", "\U0001F600"}
)

func (g *jsonGen) space() {
	for range g.r.IntN(3) {
		g.b.WriteByte(" \t\n\r"[g.r.IntN(4)])
	}
}

func (g *jsonGen) value(depth int) {
	g.space()
	switch k := g.r.IntN(10); {
	case depth < 4 && k < 2:
		g.object(depth + 1)
	case depth < 4 && k < 4:
		g.b.WriteByte('[')
		for i := range g.r.IntN(4) {
			if i > 0 {
				g.b.WriteByte(',')
			}
			g.value(depth + 1)
		}
		g.space()
		g.b.WriteByte(']')
	case k < 6:
		g.b.WriteString(genNumbers[g.r.IntN(len(genNumbers))])
	case k < 9:
		g.b.WriteString(`"` + genStrings[g.r.IntN(len(genStrings))] + `"`)
	default:
		g.b.WriteString([]string{"true", "false", "null"}[g.r.IntN(3)])
	}
	g.space()
}

func (g *jsonGen) object(depth int) {
	g.b.WriteByte('{')
	for i := range g.r.IntN(6) {
		if i > 0 {
			g.b.WriteByte(',')
		}
		g.space()
		g.b.WriteString(`"` + genKeys[g.r.IntN(len(genKeys))] + `"`)
		g.space()
		g.b.WriteByte(':')
		g.value(depth)
	}
	g.space()
	g.b.WriteByte('}')
}

func (g *jsonGen) document() json.RawMessage {
	g.b.Reset()
	g.object(0)
	return json.RawMessage(g.b.String())
}

func mustVerify(t *testing.T, s *postgres.Store, stream string) map[string]eventstore.ChainReport {
	t.Helper()
	reports := map[string]eventstore.ChainReport{}
	var order []string
	err := s.VerifyChains(testenv.Context(t), stream, func(r eventstore.ChainReport) error {
		if _, dup := reports[r.StreamID]; dup {
			t.Errorf("stream %s reported twice", r.StreamID)
		}
		reports[r.StreamID] = r
		order = append(order, r.StreamID)
		return nil
	})
	if err != nil {
		t.Fatalf("VerifyChains(%q): %v", stream, err)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("reports out of stream order: %q before %q", order[i-1], order[i])
		}
	}
	return reports
}

// The canonical form survives jsonb: events with JSON in every spelling
// jsonb rewrites, appended through all three paths (one event, 2-9 in one
// statement, 10+ with COPY), with and without actors and subject
// references, verify from what PostgreSQL gives back. The links the
// database computed (paths 1 and 2) and the ones Go computed (COPY) chain
// into each other.
func TestChainSurvivesJSONB(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	g := &jsonGen{r: rand.New(rand.NewPCG(seed, 1))}
	ref := strings.Repeat("0123456789abcdef", 4)
	event := func(i int) eventstore.EventData {
		e := eventstore.EventData{ID: eventstore.NewEventID(), Type: fmt.Sprintf("t-%d", i%3), Data: g.document()}
		if i%2 == 0 {
			e.Metadata = g.document()
		}
		if i%3 == 0 {
			e.Actor = fmt.Sprintf("token:%d", i)
		}
		if i%4 == 0 {
			e.SubjectRefs = []string{ref}
		}
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			t.Fatalf("generator wrote invalid JSON: %s %s", e.Data, e.Metadata)
		}
		return e
	}
	batches := []int{1, 1, 2, 5, 9, 10, 1, 37, 3, 1, 12}
	var all []eventstore.EventData
	for k := range 6 {
		stream := fmt.Sprintf("chain-%d", k)
		for _, n := range batches {
			evs := make([]eventstore.EventData, n)
			for i := range evs {
				evs[i] = event(len(all))
				all = append(all, evs[i])
			}
			if _, err := s.AppendToStream(ctx, stream, eventstore.Any, evs...); err != nil {
				t.Fatalf("append %d events to %s: %v\n%s", n, stream, err, evs[0].Data)
			}
		}
	}
	total := 0
	for _, n := range batches {
		total += n
	}
	reports := mustVerify(t, s, "")
	if len(reports) != 6 {
		t.Fatalf("got %d reports, want 6", len(reports))
	}
	for stream, r := range reports {
		if r.Broken != nil {
			evs, _ := s.ReadStream(ctx, stream, eventstore.ReadStreamOptions{From: r.Broken.Version, Limit: 1})
			if len(evs) == 1 {
				t.Logf("stored: %s %s", evs[0].Data, evs[0].Metadata)
			}
			t.Errorf("%s: broken at version %d (%s), want an intact chain (seed %d)", stream, r.Broken.Version, r.Broken.Reason, seed)
		}
		if r.Events != int64(total) || r.Unchained != 0 || r.LastVersion != int64(total-1) || len(r.Head) != eventstore.LinkSize {
			t.Errorf("%s: report %+v, want %d events, none unchained, a head", stream, r, total)
		}
	}
	// Reads carry the actor and the link; the last link is the head.
	evs, err := s.ReadStream(ctx, "chain-0", eventstore.ReadStreamOptions{Backward: true, From: eventstore.EndOfStream, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(evs[0].Link, reports["chain-0"].Head) {
		t.Errorf("ReadStream's last link %x, want the head %x", evs[0].Link, reports["chain-0"].Head)
	}
	for _, e := range evs {
		want := all[e.Version]
		if e.Actor != want.Actor || len(e.Link) != eventstore.LinkSize {
			t.Errorf("version %d: actor %q, link %x; want actor %q and a link", e.Version, e.Actor, e.Link, want.Actor)
		}
	}
	// The global log's reads carry them too.
	page, err := s.ReadAll(ctx, eventstore.ReadAllOptions{Limit: 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range page.Events {
		if len(e.Link) != eventstore.LinkSize {
			t.Errorf("ReadAll: %s/%d has link %x", e.StreamID, e.Version, e.Link)
		}
	}
	one := mustVerify(t, s, "chain-3")
	if len(one) != 1 || one["chain-3"].Events != int64(total) {
		t.Errorf("VerifyChains(chain-3): %+v", one)
	}
	if err := s.VerifyChains(ctx, "no-such-stream", func(eventstore.ChainReport) error { return nil }); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("VerifyChains(unknown stream): %v, want ErrStreamNotFound", err)
	}
	// A retry is its own writer's: the same events by the same actor are
	// a duplicate; by another actor, a conflict (another writer learns
	// nothing of the stored content by resending an id).
	retry := all[len(all)-1]
	if res, err := s.AppendToStream(ctx, "chain-5", eventstore.Any, retry); err != nil || !res.Duplicate {
		t.Errorf("retry by the same actor: %+v, %v; want a duplicate", res, err)
	}
	retry.Actor = "someone-else"
	if _, err := s.AppendToStream(ctx, "chain-5", eventstore.Any, retry); !errors.Is(err, eventstore.ErrDuplicateEventID) {
		t.Errorf("retry by another actor: %v; want ErrDuplicateEventID", err)
	}
}

// tamper runs statements behind Lethe's back, as the superuser the tests
// connect as, with the append-only trigger switched off for the
// transaction.
func tamper(t *testing.T, s *postgres.Store, stmts ...string) {
	t.Helper()
	ctx := testenv.Context(t)
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for _, q := range append([]string{`SET LOCAL session_replication_role = replica`}, stmts...) {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
}

// Rows edited behind Lethe's back break the chain exactly where they were
// edited; untouched streams stay intact.
func TestVerifyFindsTampering(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	streams := []string{"t-data", "t-type", "t-delete", "t-first", "t-link", "t-time", "t-actor", "t-intact"}
	for _, stream := range streams {
		for _, n := range []int{1, 3, 1, 12} { // all three paths
			evs := make([]eventstore.EventData, n)
			for i := range evs {
				evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "thing-happened", Actor: "token:t",
					Data: json.RawMessage(`{"n": 1.0, "sealed": {"ct": "q83vEjRWeJ"}}`)}
			}
			if _, err := s.AppendToStream(ctx, stream, eventstore.Any, evs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	if r := mustVerify(t, s, ""); len(r) != len(streams) {
		t.Fatalf("before tampering: %d reports, want %d", len(r), len(streams))
	}
	tamper(t, s,
		// One byte of a ciphertext.
		`UPDATE events SET data = jsonb_set(data, '{sealed,ct}', '"q83vEjRWeK"') WHERE stream_id = 't-data' AND version = 7`,
		`UPDATE events SET type = 'other-thing' WHERE stream_id = 't-type' AND version = 2`,
		`DELETE FROM events WHERE stream_id = 't-delete' AND version = 5`,
		`DELETE FROM events WHERE stream_id = 't-first' AND version = 0`,
		`UPDATE events SET link = sha256('forged') WHERE stream_id = 't-link' AND version = 16`,
		`UPDATE events SET recorded_at = recorded_at + interval '1 microsecond' WHERE stream_id = 't-time' AND version = 4`,
		`UPDATE events SET actor = 'token:other' WHERE stream_id = 't-actor' AND version = 10`,
	)
	want := map[string]*eventstore.ChainBreak{
		"t-data":   {Version: 7, Reason: eventstore.BreakLinkMismatch},
		"t-type":   {Version: 2, Reason: eventstore.BreakLinkMismatch},
		"t-delete": {Version: 5, Reason: eventstore.BreakVersionGap},
		"t-first":  {Version: 0, Reason: eventstore.BreakVersionGap},
		"t-link":   {Version: 16, Reason: eventstore.BreakLinkMismatch},
		"t-time":   {Version: 4, Reason: eventstore.BreakLinkMismatch},
		"t-actor":  {Version: 10, Reason: eventstore.BreakLinkMismatch},
		"t-intact": nil,
	}
	reports := mustVerify(t, s, "")
	for stream, w := range want {
		r, ok := reports[stream]
		if !ok {
			t.Errorf("%s: no report", stream)
			continue
		}
		switch {
		case w == nil && r.Broken != nil:
			t.Errorf("%s: broken at %+v, want intact", stream, *r.Broken)
		case w != nil && (r.Broken == nil || *r.Broken != *w):
			t.Errorf("%s: broken %+v, want %+v", stream, r.Broken, *w)
		}
	}
	if got := mustVerify(t, s, "t-data")["t-data"]; got.Broken == nil || got.Broken.Version != 7 {
		t.Errorf("VerifyChains(t-data): %+v", got)
	}
	// A truncated stream still verifies: only a quoted head finds it.
	head := reports["t-intact"]
	tamper(t, s, `DELETE FROM events WHERE stream_id = 't-intact' AND version = 16`)
	after := mustVerify(t, s, "t-intact")["t-intact"]
	if after.Broken != nil || after.LastVersion != 15 {
		t.Errorf("truncated stream: %+v, want an intact chain ending at 15", after)
	}
	links, err := s.LinksAt(ctx, []string{"t-intact", "t-intact", "t-data", "nowhere"}, []int64{16, 15, 3, 0})
	if err != nil {
		t.Fatal(err)
	}
	if links[0].Found || !links[1].Found || len(links[1].Link) != 32 || !links[2].Found || links[3].Found {
		t.Errorf("LinksAt: %+v", links)
	}
	if links[1].Found && bytes.Equal(links[1].Link, head.Head) {
		t.Error("version 15's link equals the old head (16's)")
	}
}

// Events stored before migration 009 have no link: they may only be a
// stream's first events, and the chain starts after them from 32 zero
// bytes.
func TestVerifyUnchainedPrefix(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	n := 0
	old := func(stream string, version int) string {
		n++
		return fmt.Sprintf(`INSERT INTO events (position, stream_id, version, event_id, type, data, metadata)
			VALUES (pg_current_xact_id()::text::bigint << 16 | %d, '%s', %d, gen_random_uuid(), 'old', '{"v": %d}', '{}')`, n, stream, version, version)
	}
	// As the pre-009 schema would have stored them: the check constraint
	// is lifted for the transaction.
	tamper(t, s, `ALTER TABLE events DROP CONSTRAINT events_link_check`,
		old("legacy", 0), old("legacy", 1), old("legacy", 2), old("legacy-only", 0),
		`ALTER TABLE events ADD CONSTRAINT events_link_check CHECK (link IS NOT NULL AND octet_length(link) = 32) NOT VALID`)
	for _, n := range []int{1, 4, 11} {
		evs := make([]eventstore.EventData, n)
		for i := range evs {
			evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "new", Data: json.RawMessage(`{"x": [1, 2]}`)}
		}
		if _, err := s.AppendToStream(ctx, "legacy", eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
	}
	r := mustVerify(t, s, "")
	if got := r["legacy"]; got.Broken != nil || got.Unchained != 3 || got.Events != 19 {
		t.Errorf("legacy: %+v, want 19 events, 3 unchained, intact", got)
	}
	if got := r["legacy-only"]; got.Broken != nil || got.Unchained != 1 || got.Head != nil {
		t.Errorf("legacy-only: %+v, want 1 unchained event and no head", got)
	}
	// A link removed after linked events is a break.
	tamper(t, s, `ALTER TABLE events DROP CONSTRAINT events_link_check`,
		`UPDATE events SET link = NULL WHERE stream_id = 'legacy' AND version = 9`)
	if got := mustVerify(t, s, "legacy")["legacy"]; got.Broken == nil || *got.Broken != (eventstore.ChainBreak{Version: 9, Reason: eventstore.BreakMissingLink}) {
		t.Errorf("link removed: %+v", got.Broken)
	}
}

// JSON that encoding/json accepts but jsonb refuses (a lone surrogate, an
// exponent no numeric holds) has no canonical form: every append path
// refuses it as an invalid event, before anything is written.
func TestAppendRefusesJSONWithoutCanonicalForm(t *testing.T) {
	t.Parallel()
	s := MustOpenStore(t)
	ctx := testenv.Context(t)
	for _, data := range []string{`{"a": "\ud800"}`, `{"a": 1e99999999999999999999}`} {
		for _, n := range []int{1, 3, 10} {
			evs := make([]eventstore.EventData, n)
			for i := range evs {
				evs[i] = eventstore.EventData{ID: eventstore.NewEventID(), Type: "t", Data: json.RawMessage(`{}`)}
			}
			evs[n-1].Data = json.RawMessage(data)
			_, err := s.AppendToStream(ctx, "refused", eventstore.Any, evs...)
			var invalid *eventstore.InvalidEventError
			if !errors.Is(err, eventstore.ErrInvalidEvent) || !errors.As(err, &invalid) || invalid.Index != n-1 {
				t.Errorf("append of %d events with %s: %v, want an InvalidEventError for event %d", n, data, err, n-1)
			}
		}
	}
	if _, err := s.StreamVersion(ctx, "refused"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("after the refused appends: %v, want no stream", err)
	}
}
