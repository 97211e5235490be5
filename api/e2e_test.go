package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/eventstoretest"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const casey = eventstoretest.SeedSubject

// seedSecrets are the seed's personal values: none may appear in a log
// line, an error body or at rest.
var seedSecrets = eventstoretest.SeedSecrets

// deployment is one database and Vault prefix; servers made from it stand
// for `lethe serve` processes sharing them.
type deployment struct {
	t          *testing.T
	dbURL      string
	vault      app.VaultConfig
	adminToken string
	logs       *testenv.SyncBuffer
	pool       *pgxpool.Pool
}

func newDeployment(t *testing.T) *deployment {
	t.Helper()
	c, mount, prefix := testenv.LetheVault(t)
	d := &deployment{t: t, dbURL: testenv.MigratedDatabase(t), adminToken: "admin-" + strings.Repeat("x", 40), logs: &testenv.SyncBuffer{},
		vault: app.VaultConfig{Client: c, Mount: mount, Prefix: prefix}}
	d.pool = testenv.Pool(t, d.dbURL)
	t.Cleanup(func() {
		// No personal value and no token secret in any log line of any
		// server of this deployment.
		out := d.logs.String()
		for _, s := range append(seedSecrets, d.adminToken) {
			if strings.Contains(out, s) {
				t.Errorf("server log contains %q", s)
			}
		}
	})
	return d
}

// open assembles one "process" on the deployment as `lethe serve` does
// (app.Open): its own pool, caches and key store. configure, if given,
// changes the API's options (a test wraps a port to inject a fault).
func (d *deployment) open(configure ...func(*api.Options)) *app.App {
	d.t.Helper()
	a, err := app.Open(testenv.Context(d.t), app.Config{
		Logger: slog.New(slog.NewTextHandler(d.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Pool:   testenv.Pool(d.t, d.dbURL), Vault: d.vault, AdminToken: d.adminToken,
		// Snapshots every 3 events: the state tests go through them.
		SnapshotEvery: 3, ProjectionIdle: 100 * time.Millisecond,
		Limits: api.Limits{SSEHeartbeat: 200 * time.Millisecond},
		AdjustAPI: func(o *api.Options) {
			for _, f := range configure {
				f(o)
			}
		},
	})
	if err != nil {
		d.t.Fatalf("open lethe: %v", err)
	}
	d.t.Cleanup(a.Close)
	return a
}

// server starts one "process" (open) and serves it, running its
// listeners and projections, until the test ends.
func (d *deployment) server(configure ...func(*api.Options)) *httptest.Server {
	d.t.Helper()
	a := d.open(configure...)
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); a.Run(ctx) }()
	d.t.Cleanup(func() { cancel(); <-running })
	hs := httptest.NewUnstartedServer(a.Handler())
	hs.Config.RegisterOnShutdown(a.Handler().BeginShutdown)
	hs.Start()
	d.t.Cleanup(hs.Close)
	return hs
}

// tokens are one client per role, made through the admin API.
type tokens struct {
	admin, writer, reader, pii, auditor *client.Client
	ids, secrets                        map[string]string
}

func (d *deployment) tokens(hs *httptest.Server) tokens {
	d.t.Helper()
	ctx := testenv.Context(d.t)
	admin := client.New(hs.URL, d.adminToken, hs.Client())
	tk := tokens{admin: admin, ids: map[string]string{}, secrets: map[string]string{}}
	for _, role := range []string{wire.RoleWriter, wire.RoleReader, wire.RolePIIReader, wire.RoleAuditor} {
		t, err := admin.CreateToken(ctx, role+"-test", role)
		if err != nil {
			d.t.Fatalf("create %s token: %v", role, err)
		}
		if !strings.HasPrefix(t.Secret, "lethe_") || t.ID == "" {
			d.t.Fatalf("token %+v", t)
		}
		tk.ids[role] = t.ID
		tk.secrets[role] = t.Secret
		c := client.New(hs.URL, t.Secret, hs.Client())
		switch role {
		case wire.RoleWriter:
			tk.writer = c
		case wire.RoleReader:
			tk.reader = c
		case wire.RolePIIReader:
			tk.pii = c
		case wire.RoleAuditor:
			tk.auditor = c
		}
	}
	return tk
}

// seedLead is the seed's lead stream as an API append: the name and phone
// fields declared as casey's personal data.
// appendSeedLead appends the seed's lead stream lead-12 through w.
func appendSeedLead(t *testing.T, w *client.Client) {
	t.Helper()
	if _, err := w.Append(testenv.Context(t), "lead-12", wire.Exact(-1), seedLead()...); err != nil {
		t.Fatalf("append the seed's lead: %v", err)
	}
}

func seedLead() []wire.NewEvent {
	var out []wire.NewEvent
	for _, e := range eventstoretest.SeedLeadEvents() {
		ne := wire.NewEvent{ID: e.ID.String(), Type: e.Type, Data: e.Data}
		if paths := eventstoretest.SeedPersonalPaths(e.Data); len(paths) > 0 {
			ne.PersonalData = []wire.PersonalData{{Subject: casey, Paths: paths}}
		}
		out = append(out, ne)
	}
	return out
}

func data(t *testing.T, e wire.Event) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(e.Data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func problemType(err error) string { return client.ProblemType(err) }

// The acceptance, through real HTTP: the seed's lead stream
// appended, read back (pii-reader: plaintext; reader: restricted), a
// conflict with the concurrent events, an idempotent retry, the erase
// receipt, reads after erase showing forgotten, a refused new append.
func TestSeedLeadThroughTheAPI(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	events := seedLead()

	res, err := tk.writer.Append(ctx, "lead-12", wire.Exact(-1), events...)
	if err != nil || res.Duplicate || res.FirstVersion != 0 || res.LastVersion != 6 || res.StreamID != "lead-12" || res.FirstPosition <= 0 || res.LastPosition < res.FirstPosition {
		t.Fatalf("append = %+v, %v", res, err)
	}
	again, err := tk.writer.Append(ctx, "lead-12", wire.Exact(-1), events...)
	if err != nil || !again.Duplicate || again.AppendResult != res.AppendResult {
		t.Fatalf("retried append = %+v, %v; want 200 with %+v", again, err, res.AppendResult)
	}

	page, err := tk.pii.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || len(page.Events) != 7 || page.Next != nil {
		t.Fatalf("pii read = %d events, next %v, %v", len(page.Events), page.Next, err)
	}
	if m := data(t, page.Events[0]); m["first-name"] != "Casey" || m["last-name"] != "David" || m["phone-number"] != "555-2951" || len(page.Events[0].Redacted) != 0 {
		t.Errorf("pii-reader sees %v, redacted %v", m, page.Events[0].Redacted)
	}
	if page.Events[3].Version != 3 || page.Events[3].Type != "contact-details-updated" || data(t, page.Events[3])["phone-number"] != "555-8101" {
		t.Errorf("event 3 = %+v", page.Events[3])
	}

	restricted, err := tk.reader.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || len(restricted.Events) != 7 {
		t.Fatalf("reader read: %v", err)
	}
	e0 := restricted.Events[0]
	if m := data(t, e0); m["first-name"] != nil || m["phone-number"] != nil || m["timestamp"] != "2020-05-20T09:52:55.95Z" {
		t.Errorf("reader sees %v", m)
	}
	if len(e0.Redacted) != 3 || e0.Redacted[0].Reason != wire.ReasonRestricted {
		t.Errorf("reader redactions %v", e0.Redacted)
	}
	if body, _ := json.Marshal(restricted); bytes.Contains(body, []byte("Casey")) || bytes.Contains(body, []byte("555-")) {
		t.Errorf("restricted read carries personal data: %s", body)
	}

	// The pii-reader's reads are in the access log; the reader's are not.
	var n int
	var refs []string
	if err := d.pool.QueryRow(ctx, `SELECT count(*), coalesce(max(subject_refs), '{}') FROM access_log WHERE token_id = $1`, tk.ids[wire.RolePIIReader]).Scan(&n, &refs); err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(refs) != 1 || len(refs[0]) != 64 {
		t.Errorf("access log of the pii-reader: %d rows, refs %v", n, refs)
	}
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE token_id = $1`, tk.ids[wire.RoleReader]).Scan(&n); err != nil || n != 0 {
		t.Errorf("access log of the reader: %d rows, %v", n, err)
	}

	// A conflict answers the events appended since the expected version,
	// opened per the caller's rights (a writer: restricted).
	next := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "contacted", Data: json.RawMessage(`{"timestamp":"2020-06-01T10:00:00Z"}`)}
	_, err = tk.writer.Append(ctx, "lead-12", wire.Exact(2), next)
	var conflict *client.Conflict
	if !errors.As(err, &conflict) || conflict.CurrentVersion == nil || *conflict.CurrentVersion != 6 || len(conflict.Events) != 4 || conflict.Events[0].Version != 3 {
		t.Fatalf("conflict = %v (%+v)", err, conflict)
	}
	if conflict.Status != 409 || conflict.Events[0].Redacted[0].Reason != wire.ReasonRestricted {
		t.Errorf("conflict events %+v", conflict.Events[0])
	}

	receipt, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{Reason: "customer request", LegalBasis: "GDPR Art. 17(1)(a)"})
	if err != nil || receipt.Status != "completed" || receipt.Completion == nil || !receipt.Completion.KeyVerifiedGone ||
		receipt.Completion.EventsAffected != 2 || receipt.Completion.StreamsAffected != 1 || len(receipt.SubjectRef) != 64 || receipt.Actor != "token:"+api.BootstrapTokenID {
		t.Fatalf("receipt = %+v, %v", receipt, err)
	}
	second, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{})
	if err != nil || second.ErasureID != receipt.ErasureID || second.SubjectRef != receipt.SubjectRef {
		t.Errorf("second erase = %+v, %v; want the first receipt", second, err)
	}
	if got, err := tk.admin.Erasure(ctx, casey); err != nil || got.ErasureID != receipt.ErasureID {
		t.Errorf("erasure status = %+v, %v", got, err)
	}

	after, err := tk.pii.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || len(after.Events) != 7 {
		t.Fatalf("read after erase: %v", err)
	}
	for i, e := range after.Events {
		if i == 0 || i == 3 {
			m := data(t, e)
			if m["first-name"] != nil || m["last-name"] != nil || m["phone-number"] != nil || len(e.Redacted) != 3 || e.Redacted[0].Reason != wire.ReasonForgotten {
				t.Errorf("event %d after erase: %v %v", i, m, e.Redacted)
			}
			if _, ok := m["first-name"]; !ok {
				t.Errorf("event %d: the forgotten field lost its place", i)
			}
			continue
		}
		if !bytes.Equal(e.Data, page.Events[i].Data) || len(e.Redacted) != 0 {
			t.Errorf("event %d changed by the erase: %s", i, e.Data)
		}
	}

	_, err = tk.writer.Append(ctx, "lead-13", wire.Any(), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized",
		Data: json.RawMessage(`{"first-name":"Casey"}`), PersonalData: []wire.PersonalData{{Subject: casey, Paths: []string{"/first-name"}}}})
	if problemType(err) != "subject-erased" {
		t.Errorf("append for an erased subject = %v, want subject-erased", err)
	}
	if _, err := tk.reader.ReadStream(ctx, "lead-13", client.ReadOptions{}); problemType(err) != "stream-not-found" {
		t.Errorf("lead-13 = %v, want stream-not-found (nothing written)", err)
	}
}

// Paging forward and backward, the global log with filters.
func TestReadPaging(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	for i := range 5 {
		e := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: fmt.Sprintf("t%d", i%2), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if _, err := tk.writer.Append(ctx, "order-1", wire.Any(), e); err != nil {
			t.Fatal(err)
		}
	}
	p, err := tk.reader.ReadStream(ctx, "order-1", client.ReadOptions{Limit: 2})
	if err != nil || len(p.Events) != 2 || p.Next == nil || *p.Next != 2 {
		t.Fatalf("page 1 = %+v, %v", p, err)
	}
	p, err = tk.reader.ReadStream(ctx, "order-1", client.ReadOptions{From: client.Version(4), Limit: 2})
	if err != nil || len(p.Events) != 1 || p.Next != nil {
		t.Fatalf("last page = %+v, %v", p, err)
	}
	p, err = tk.reader.ReadStream(ctx, "order-1", client.ReadOptions{Backward: true, Limit: 2})
	if err != nil || len(p.Events) != 2 || p.Events[0].Version != 4 || p.Next == nil || *p.Next != 2 {
		t.Fatalf("backward = %+v, %v", p, err)
	}
	// The global log, followed page by page as a client does: a page may
	// be short or empty while an older transaction anywhere in the
	// cluster is open (the visibility horizon); following next loses
	// nothing and repeats nothing.
	follow := func(opts client.LogOptions, want int) []wire.Event {
		t.Helper()
		var got []wire.Event
		deadline := time.Now().Add(10 * time.Second)
		for len(got) < want {
			page, err := tk.reader.ReadAll(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if page.Next < opts.FromPosition || (len(page.Events) > 0 && page.Events[0].Position < opts.FromPosition) {
				t.Fatalf("page from %d went back: %+v", opts.FromPosition, page)
			}
			got = append(got, page.Events...)
			opts.FromPosition = page.Next
			if time.Now().After(deadline) {
				t.Fatalf("log followed with %+v: %d events, want %d", opts, len(got), want)
			}
			if len(page.Events) == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		return got
	}
	t1 := follow(client.LogOptions{Types: []string{"t1"}}, 2)
	if len(t1) != 2 || t1[0].Type != "t1" || t1[1].Type != "t1" || t1[0].Version != 1 || t1[1].Version != 3 {
		t.Fatalf("filtered log = %+v", t1)
	}
	paged := follow(client.LogOptions{Limit: 2, Categories: []string{"order"}}, 5)
	for i, e := range paged {
		if len(paged) != 5 || e.Version != int64(i) || e.StreamID != "order-1" {
			t.Fatalf("log in pages of 2 = %+v", paged)
		}
	}
	if _, err := tk.reader.ReadStream(ctx, "no-such-stream", client.ReadOptions{}); problemType(err) != "stream-not-found" {
		t.Errorf("unknown stream = %v", err)
	}
}

// SSE: catch-up, caught-up, live, and a resume with Last-Event-ID that
// loses and repeats nothing — for the global log and a stream.
func TestSubscriptions(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendN := func(stream string, from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			e := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "tick", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
			if _, err := tk.writer.Append(ctx, stream, wire.Any(), e); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN("clock-1", 0, 3)

	for _, tc := range []struct {
		name      string
		subscribe func(lastID string) (*client.Subscription, error)
	}{
		{"all", func(lastID string) (*client.Subscription, error) {
			return tk.pii.SubscribeAll(ctx, 0, lastID, nil, []string{"clock"})
		}},
		{"stream", func(lastID string) (*client.Subscription, error) {
			return tk.pii.SubscribeStream(ctx, "clock-1", 0, lastID)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := tc.subscribe("")
			if err != nil {
				t.Fatal(err)
			}
			var seen []int
			var lastID string
			read := func(s *client.Subscription, want int) {
				t.Helper()
				for len(seen) < want {
					ev, err := s.Next()
					if err != nil {
						t.Fatalf("next after %v: %v", seen, err)
					}
					switch ev.Kind {
					case "caught-up":
						continue
					case "":
						var m map[string]int
						_ = json.Unmarshal(ev.Event.Data, &m)
						seen = append(seen, m["n"])
						lastID = ev.ID
						if ev.ID != fmt.Sprint(ev.Event.Position) {
							t.Errorf("SSE id %s, position %d", ev.ID, ev.Event.Position)
						}
					default:
						t.Fatalf("unexpected %s: %s", ev.Kind, ev.Data)
					}
				}
			}
			existing := countStream(t, tk, "clock-1")
			read(sub, existing) // catch-up
			appendN("clock-1", existing, 2)
			read(sub, existing+2) // live
			_ = sub.Close()
			appendN("clock-1", existing+2, 2) // while disconnected
			sub, err = tc.subscribe(lastID)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			read(sub, existing+4)
			for i, n := range seen {
				if n != i {
					t.Fatalf("events %v: lost or repeated", seen)
				}
			}
		})
	}
}

func countStream(t *testing.T, tk tokens, stream string) int {
	t.Helper()
	p, err := tk.reader.ReadStream(testenv.Context(t), stream, client.ReadOptions{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(p.Events)
}

// Two servers on one database: an erase through one is honoured by the
// other at once, although the other has the key cached.
func TestEraseHonouredByAnotherServer(t *testing.T) {
	d := newDeployment(t)
	a, b := d.server(), d.server()
	tka := d.tokens(a)
	ctx := testenv.Context(t)
	tok, err := tka.admin.CreateToken(ctx, "pii-b", wire.RolePIIReader)
	if err != nil {
		t.Fatal(err)
	}
	piiB := client.New(b.URL, tok.Secret, b.Client())
	appendSeedLead(t, tka.writer)
	p, err := piiB.ReadStream(ctx, "lead-12", client.ReadOptions{}) // warms b's key cache
	if err != nil || data(t, p.Events[0])["first-name"] != "Casey" {
		t.Fatalf("read through b: %v", err)
	}
	if _, err := tka.admin.Erase(ctx, casey, wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	p, err = piiB.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || data(t, p.Events[0])["first-name"] != nil || p.Events[0].Redacted[0].Reason != wire.ReasonForgotten {
		t.Fatalf("read through b right after the erase through a: %+v, %v", p.Events[0], err)
	}
	// A token revoked through a is refused by b at once.
	if err := tka.admin.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err = piiB.ReadStream(ctx, "lead-12", client.ReadOptions{})
		if problemType(err) == "unauthenticated" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still accepted by b: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Bad input gets a 4xx problem and writes nothing.
func TestBadInputWritesNothing(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	writer := tk.secrets[wire.RoleWriter]
	id := eventstore.NewEventID().String()
	big := `{"expectedVersion":"any","events":[{"id":"` + id + `","type":"t","data":{"x":"` + strings.Repeat("a", 5<<20) + `"}}]}`
	for _, tc := range []struct {
		name, stream, contentType, body string
		status                          int
		problem                         string
	}{
		{"malformed JSON", "s-1", "application/json", `{"events": [`, 400, "invalid-request"},
		{"wrong type", "s-1", "application/json", `{"events": "x"}`, 400, "invalid-request"},
		{"bad expected version", "s-1", "application/json", `{"expectedVersion": "maybe", "events": [{"id":"` + id + `","type":"t","data":{}}]}`, 400, "invalid-request"},
		{"unknown field", "s-1", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{},"colour":"red"}]}`, 400, "invalid-request"},
		{"trailing data", "s-1", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{}}]} {}`, 400, "invalid-request"},
		{"no events", "s-1", "application/json", `{"events": []}`, 400, "invalid-request"},
		{"bad UUID", "s-1", "application/json", `{"events": [{"id":"not-a-uuid","type":"t","data":{}}]}`, 400, "invalid-event"},
		{"no id", "s-1", "application/json", `{"events": [{"type":"t","data":{}}]}`, 400, "invalid-event"},
		{"data not an object", "s-1", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":[1]}]}`, 400, "invalid-event"},
		{"no type", "s-1", "application/json", `{"events": [{"id":"` + id + `","data":{}}]}`, 400, "invalid-event"},
		{"bad stream id", "bad%20stream", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{}}]}`, 400, "invalid-stream-id"},
		{"system stream", "$lethe-erasures", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{}}]}`, 400, "invalid-stream-id"},
		{"bad pointer", "s-1", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{"a":1},"personalData":[{"subject":"x@example.com","paths":["a"]}]}]}`, 400, "invalid-personal-data"},
		{"missing field", "s-1", "application/json", `{"events": [{"id":"` + id + `","type":"t","data":{"a":1},"personalData":[{"subject":"x@example.com","paths":["/b"]}]}]}`, 400, "invalid-personal-data"},
		{"not JSON", "s-1", "text/plain", `hello`, 415, "unsupported-media-type"},
		{"oversized body", "s-1", "application/json", big, 413, "body-too-large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/streams/"+tc.stream+"/events", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+writer)
			req.Header.Set("Content-Type", tc.contentType)
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var p wire.Problem
			if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal(body, &p) != nil ||
				p.Type != api.ProblemTypeBase+tc.problem || p.Detail == "" || p.RequestID == "" {
				t.Errorf("%d %s %s; want %d %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.problem)
			}
		})
	}
	var n int
	if err := d.pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM events WHERE stream_id NOT LIKE '$%'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d events written by bad requests (%v)", n, err)
	}
}

// Graceful shutdown ends open subscriptions cleanly (an SSE "shutdown"
// event, then the end of the stream), so that http.Server.Shutdown is not
// held up by them.
func TestShutdownEndsSubscriptions(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	sub, err := tk.reader.SubscribeAll(ctx, 0, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for {
		ev, err := sub.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Kind == "caught-up" {
			break
		}
	}
	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- hs.Config.Shutdown(sctx)
	}()
	ev, err := sub.Next()
	if err != nil || ev.Kind != "shutdown" {
		t.Fatalf("during shutdown: %+v, %v; want a shutdown event", ev, err)
	}
	if _, err := sub.Next(); err != io.EOF {
		t.Errorf("after the shutdown event: %v, want the end of the stream", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown held up by the subscription")
	}
}
