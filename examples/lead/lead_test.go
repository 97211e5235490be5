package lead_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/examples/lead"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const casey = "casey.davis@example.com"

// lethe is one Lethe API server on a database and Vault prefix of its own,
// assembled and run as `lethe serve` does (app.Open, Run), with a client
// per token.
type lethe struct {
	url                 string
	http                *http.Client
	admin, pii, reader  *client.Client
	piiToken, readToken string
}

func startLethe(t *testing.T) *lethe {
	t.Helper()
	ctx := testenv.Context(t)
	vc, mount, prefix := testenv.LetheVault(t)
	const adminToken = "admin-token-of-the-lead-example-tests-0123456789"
	a, err := app.Open(ctx, app.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Pool: testenv.Pool(t, testenv.MigratedDatabase(t)), Vault: app.VaultConfig{Client: vc, Mount: mount, Prefix: prefix},
		AdminToken: adminToken})
	if err != nil {
		t.Fatalf("open lethe: %v", err)
	}
	t.Cleanup(a.Close)
	runCtx, stop := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); a.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-running })
	hs := httptest.NewUnstartedServer(a.Handler())
	hs.Config.RegisterOnShutdown(a.Handler().BeginShutdown)
	hs.Start()
	t.Cleanup(hs.Close)

	l := &lethe{url: hs.URL, http: hs.Client(), admin: client.New(hs.URL, adminToken, hs.Client())}
	for _, tk := range []struct {
		secret *string
		roles  []string
	}{{&l.piiToken, []string{wire.RoleWriter, wire.RolePIIReader}}, {&l.readToken, []string{wire.RoleReader}}} {
		created, err := l.admin.CreateToken(ctx, "lead-example", tk.roles...)
		if err != nil {
			t.Fatalf("create token: %v", err)
		}
		*tk.secret = created.Secret
	}
	l.pii = client.New(hs.URL, l.piiToken, hs.Client())
	l.reader = client.New(hs.URL, l.readToken, hs.Client())
	return l
}

// handler is a lead service: writer + pii-reader, every lead casey's.
func (l *lethe) handler(transport http.RoundTripper) *lead.Handler {
	hc := l.http
	if transport != nil {
		hc = &http.Client{Transport: transport}
	}
	return &lead.Handler{Client: client.New(l.url, l.piiToken, hc), Subject: func(string) string { return casey }}
}

func seedTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The seed's story, played as commands, gives the seed's events: those of
// docs/examples/lead-12.json, which `make run` loads. Then the lead at a
// past version, and after casey is erased.
func TestSeedStory(t *testing.T) {
	l := startLethe(t)
	h := l.handler(nil)
	ctx := testenv.Context(t)
	tm := func(s string) time.Time { return seedTime(t, s) }

	story := []lead.Command{
		lead.InitializeLead{LeadID: 12, FirstName: "Casey", LastName: "David", PhoneNumber: "555-2951", At: tm("2020-05-20T09:52:55.95Z")},
		lead.RecordContact{At: tm("2020-05-20T12:32:08.24Z")},
		lead.SetFollowup{On: tm("2020-05-27T12:00:00Z"), At: tm("2020-05-20T12:32:08.24Z")},
		lead.UpdateContactDetails{FirstName: "Casey", LastName: "Davis", PhoneNumber: "555-8101", At: tm("2020-05-20T12:32:08.24Z")},
		lead.RecordContact{At: tm("2020-05-27T12:02:12.51Z")},
		lead.SubmitOrder{PaymentDeadline: tm("2020-05-30T12:02:12.51Z"), At: tm("2020-05-27T12:02:12.51Z")},
		lead.ConfirmPayment{At: tm("2020-05-27T12:38:44.12Z")},
	}
	for i, cmd := range story {
		res, err := h.Handle(ctx, "lead-12", cmd)
		if err != nil || res.Attempts != 1 || len(res.Events) != 1 || res.Lead.Version != int64(i) {
			t.Fatalf("command %d (%T) = %+v, %v", i, cmd, res, err)
		}
	}

	b, err := os.ReadFile("../../docs/examples/lead-12.json")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := wire.Decode[wire.AppendRequest](b)
	if err != nil {
		t.Fatal(err)
	}
	page, err := l.pii.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil || len(page.Events) != len(seed.Events) {
		t.Fatalf("read = %d events, %v; want %d", len(page.Events), err, len(seed.Events))
	}
	restricted, err := l.reader.ReadStream(ctx, "lead-12", client.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range seed.Events {
		got := page.Events[i]
		if got.Type != want.Type || !jsonEqual(t, got.Data, want.Data) {
			t.Errorf("version %d = %s %s, want %s %s", i, got.Type, got.Data, want.Type, want.Data)
		}
		// The seed file's personal data is what the aggregate declared:
		// hidden from a reader.
		var paths, wantPaths []string
		for _, r := range restricted.Events[i].Redacted {
			paths = append(paths, r.Path)
		}
		for _, pd := range want.PersonalData {
			wantPaths = append(wantPaths, pd.Paths...)
		}
		slices.Sort(paths)
		slices.Sort(wantPaths)
		if !slices.Equal(paths, wantPaths) {
			t.Errorf("version %d: personal fields %v, want %v", i, paths, wantPaths)
		}
	}

	now, err := h.Load(ctx, "lead-12")
	if err != nil {
		t.Fatal(err)
	}
	want := lead.Lead{Version: 6, ID: 12, FirstName: "Casey", LastName: "Davis", PhoneNumber: "555-8101",
		Status: lead.StatusConverted, FollowupOn: tm("2020-05-27T12:00:00Z"), PaymentDeadline: tm("2020-05-30T12:02:12.51Z"),
		Contacts: 2, LastContacted: tm("2020-05-27T12:02:12.51Z"), UpdatedAt: tm("2020-05-27T12:38:44.12Z")}
	if !reflect.DeepEqual(now, want) {
		t.Errorf("lead at version 6 = %+v\nwant %+v", now, want)
	}
	// Time travel: the first three events are the lead at version 2.
	events, err := h.Events(ctx, "lead-12")
	if err != nil {
		t.Fatal(err)
	}
	then, err := lead.Fold(events[:3]...)
	if err != nil || then.LastName != "David" || then.PhoneNumber != "555-2951" || then.Status != lead.StatusFollowupSet || !then.FollowupOn.Equal(tm("2020-05-27T12:00:00Z")) {
		t.Errorf("lead at version 2 = %+v, %v", then, err)
	}

	// The rules hold on the stored state.
	if _, err := h.Handle(ctx, "lead-12", lead.SetFollowup{On: time.Now().Add(time.Hour)}); !errors.Is(err, lead.ErrConverted) {
		t.Errorf("follow-up on a converted lead: %v, want ErrConverted", err)
	}
	readerOnly := &lead.Handler{Client: l.reader, Subject: func(string) string { return casey }}
	if _, err := readerOnly.Handle(ctx, "lead-12", lead.RecordContact{}); !errors.Is(err, lead.ErrRestricted) {
		t.Errorf("a reader's handler: %v, want ErrRestricted", err)
	}

	// Erase casey: the story stays, her names and phone number are gone.
	if _, err := l.admin.Erase(ctx, casey, wire.EraseRequest{LegalBasis: "GDPR Art. 17(1)(a)"}); err != nil {
		t.Fatal(err)
	}
	forgotten, err := h.Load(ctx, "lead-12")
	wantRedacted := map[string]string{lead.PathFirstName: wire.ReasonForgotten, lead.PathLastName: wire.ReasonForgotten, lead.PathPhoneNumber: wire.ReasonForgotten}
	if err != nil || forgotten.FirstName != "" || forgotten.PhoneNumber != "" || !reflect.DeepEqual(forgotten.Redacted, wantRedacted) ||
		forgotten.Status != lead.StatusConverted || forgotten.Contacts != 2 || forgotten.Version != 6 {
		t.Errorf("lead after erasure = %+v, %v", forgotten, err)
	}
	if res, err := h.Handle(ctx, "lead-12", lead.RecordContact{}); err != nil || res.Lead.Version != 7 {
		t.Errorf("contact after erasure = %+v, %v", res, err)
	}
	if _, err := h.Handle(ctx, "lead-12", lead.UpdateContactDetails{PhoneNumber: "555-0000"}); client.ProblemType(err) != "subject-erased" {
		t.Errorf("new phone number after erasure: %v, want subject-erased", err)
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// holdFirstAppend holds a handler's first append until release is closed,
// after closing held: another handler can append in between, as if it had
// been a little faster.
type holdFirstAppend struct {
	next          http.RoundTripper
	once          sync.Once
	held, release chan struct{}
}

func (g *holdFirstAppend) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost {
		g.once.Do(func() {
			close(g.held)
			<-g.release
		})
	}
	return g.next.RoundTrip(r)
}

// Two handlers decide on the same version; the slow one's append
// conflicts. Concurrent events that change other facts are merged (the
// slow command is decided again on top); the same fact is a ConflictError.
func TestConcurrentCommands(t *testing.T) {
	l := startLethe(t)
	fast := l.handler(nil)
	for i, tc := range []struct {
		name       string
		slow, fast lead.Command
		conflict   []lead.Fact // nil: both succeed
		want       lead.Lead   // the fields checked
	}{
		{"contact details while contacted", lead.UpdateContactDetails{PhoneNumber: "555-8101"}, lead.RecordContact{},
			nil, lead.Lead{LastName: "David", PhoneNumber: "555-8101", Contacts: 1}},
		{"contacted while contact details", lead.RecordContact{}, lead.UpdateContactDetails{PhoneNumber: "555-8101"},
			nil, lead.Lead{LastName: "David", PhoneNumber: "555-8101", Contacts: 1}},
		{"name while phone number", lead.UpdateContactDetails{FirstName: "Casey", LastName: "Davis"}, lead.UpdateContactDetails{PhoneNumber: "555-8101"},
			nil, lead.Lead{LastName: "Davis", PhoneNumber: "555-8101"}},
		{"phone number while phone number", lead.UpdateContactDetails{PhoneNumber: "555-0000"}, lead.UpdateContactDetails{PhoneNumber: "555-8101"},
			[]lead.Fact{lead.FactPhone}, lead.Lead{LastName: "David", PhoneNumber: "555-8101"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testenv.Context(t)
			stream := "lead-" + string(rune('a'+i))
			if _, err := fast.Handle(ctx, stream, lead.InitializeLead{LeadID: 12, FirstName: "Casey", LastName: "David", PhoneNumber: "555-2951"}); err != nil {
				t.Fatal(err)
			}
			hold := &holdFirstAppend{next: l.http.Transport, held: make(chan struct{}), release: make(chan struct{})}
			slow := l.handler(hold)
			type outcome struct {
				res lead.Result
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := slow.Handle(ctx, stream, tc.slow)
				done <- outcome{res, err}
			}()
			select {
			case <-hold.held: // the slow handler has loaded version 0 and decided
			case o := <-done:
				t.Fatalf("slow handler ended before appending: %+v, %v", o.res, o.err)
			}
			if res, err := fast.Handle(ctx, stream, tc.fast); err != nil || res.Attempts != 1 {
				t.Fatalf("fast handler = %+v, %v", res, err)
			}
			close(hold.release)
			o := <-done

			var conflict *lead.ConflictError
			var server *client.Conflict
			switch {
			case tc.conflict == nil:
				if o.err != nil || o.res.Attempts != 2 || o.res.Lead.Version != 2 {
					t.Errorf("slow handler = %+v, %v; want success on the second append", o.res, o.err)
				}
			case !errors.As(o.err, &conflict) || !slices.Equal(conflict.Facts, tc.conflict) || len(conflict.Concurrent) != 1 ||
				conflict.Concurrent[0].Type != lead.TypeContactDetailsUpdated || conflict.Current.Version != 1:
				t.Errorf("slow handler: %v (%+v), want a ConflictError on %v", o.err, conflict, tc.conflict)
			case !errors.As(o.err, &server) || server.CurrentVersion == nil || *server.CurrentVersion != 1:
				t.Errorf("the ConflictError does not unwrap to the server's conflict: %v", o.err)
			}

			got, err := fast.Load(ctx, stream)
			if err != nil || got.FirstName != "Casey" || got.LastName != tc.want.LastName || got.PhoneNumber != tc.want.PhoneNumber || got.Contacts != tc.want.Contacts {
				t.Errorf("lead = %+v, %v; want %s, %s, %d contacts", got, err, tc.want.LastName, tc.want.PhoneNumber, tc.want.Contacts)
			}
		})
	}
}

// The rules, without a server.
func TestDecide(t *testing.T) {
	base, err := lead.Fold()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2020, 5, 20, 12, 0, 0, 0, time.UTC)
	apply := func(l lead.Lead, cmd lead.Command) lead.Lead {
		t.Helper()
		events, err := lead.Decide(l, cmd)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		for _, e := range events {
			if l, err = l.Apply(e); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	created := apply(base, lead.InitializeLead{LeadID: 12, FirstName: "Casey", LastName: "David", PhoneNumber: "555-2951", At: at})
	ordered := apply(created, lead.SubmitOrder{PaymentDeadline: at.Add(72 * time.Hour), At: at})
	converted := apply(ordered, lead.ConfirmPayment{At: at})
	for _, tc := range []struct {
		name string
		l    lead.Lead
		cmd  lead.Command
		want error // nil: no error
	}{
		{"contact a lead that does not exist", base, lead.RecordContact{}, lead.ErrNotFound},
		{"create twice", created, lead.InitializeLead{LeadID: 12, FirstName: "C", PhoneNumber: "1"}, lead.ErrExists},
		{"create without a phone number", base, lead.InitializeLead{LeadID: 12, FirstName: "Casey"}, lead.ErrInvalid},
		{"follow-up in the past", created, lead.SetFollowup{On: at.Add(-time.Hour), At: at}, lead.ErrInvalid},
		{"update nothing", created, lead.UpdateContactDetails{}, lead.ErrInvalid},
		{"pay without an order", created, lead.ConfirmPayment{}, lead.ErrNoOrder},
		{"order twice", ordered, lead.SubmitOrder{PaymentDeadline: at.Add(time.Hour), At: at}, lead.ErrOrderPending},
		{"follow up a converted lead", converted, lead.SetFollowup{On: at.Add(time.Hour), At: at}, lead.ErrConverted},
		{"order from a converted lead", converted, lead.SubmitOrder{PaymentDeadline: at.Add(time.Hour), At: at}, lead.ErrConverted},
		{"contact a converted lead", converted, lead.RecordContact{}, nil},
	} {
		if _, err := lead.Decide(tc.l, tc.cmd); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// Setting the values the lead already has is nothing to do.
	if events, err := lead.Decide(created, lead.UpdateContactDetails{LastName: "David", PhoneNumber: "555-2951"}); err != nil || len(events) != 0 {
		t.Errorf("unchanged details = %v, %v; want no event", events, err)
	}
	// The events are numbered after the lead, in the seed's format.
	events, err := lead.Decide(created, lead.SetFollowup{On: at.Add(7 * 24 * time.Hour), At: at})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(events[0].Data)
	if want := `{"lead-id":12,"event-id":1,"followup-on":"2020-05-27T12:00:00.00Z","timestamp":"2020-05-20T12:00:00.00Z"}`; string(b) != want || events[0].Version != 1 {
		t.Errorf("followup-set = version %d %s, want version 1 %s", events[0].Version, b, want)
	}
}
