package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const adminToken = "admin-token-of-the-composition-root-tests-0123456789"

// optionalPorts are the api.Options a server may run without: domain
// folds and upcasters are the application's, not Lethe's. Every other
// field with a nil zero value is a port `lethe serve` wires.
var optionalPorts = []string{"Folders", "Upcasters"}

// open assembles Lethe on dbURL as `lethe serve` does.
func open(t *testing.T, dbURL string, vc app.VaultConfig) *app.App {
	t.Helper()
	return openWith(t, dbURL, vc, io.Discard)
}

// openWith is open with the server's log (debug level) written to logs.
func openWith(t *testing.T, dbURL string, vc app.VaultConfig, logs io.Writer) *app.App {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := app.Open(testenv.Context(t), app.Config{Logger: log, DatabaseURL: dbURL, Vault: vc,
		AdminToken: adminToken, ProjectionIdle: 50 * time.Millisecond, Limits: api.Limits{SSEHeartbeat: 100 * time.Millisecond}})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

// serve runs a and serves its API until the test ends.
func serve(t *testing.T, a *app.App) *httptest.Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); a.Run(ctx) }()
	hs := httptest.NewUnstartedServer(a.Handler())
	hs.Config.RegisterOnShutdown(a.Handler().BeginShutdown)
	hs.Start()
	t.Cleanup(func() { hs.Close(); cancel(); <-running })
	return hs
}

func lethesVault(t *testing.T) app.VaultConfig {
	t.Helper()
	c, mount, prefix := testenv.LetheVault(t)
	return app.VaultConfig{Client: c, Mount: mount, Prefix: prefix}
}

// A server built by the root lacks none of the ports of the API: a new
// port added to api.Options and not wired here fails this test.
func TestRootWiresEveryPort(t *testing.T) {
	t.Parallel()
	a := open(t, testenv.MigratedDatabase(t), lethesVault(t))
	opts := reflect.ValueOf(a.APIOptions())
	typ := opts.Type()
	for i := range typ.NumField() {
		f, v := typ.Field(i), opts.Field(i)
		switch v.Kind() {
		case reflect.Interface, reflect.Pointer, reflect.Func, reflect.Map, reflect.Slice:
			if v.IsNil() && !slices.Contains(optionalPorts, f.Name) {
				t.Errorf("api.Options.%s is not wired by the root", f.Name)
			}
		case reflect.String:
			if v.String() == "" {
				t.Errorf("api.Options.%s is empty", f.Name)
			}
		}
	}
	var names []string
	for _, c := range a.APIOptions().Readiness {
		names = append(names, c.Name)
	}
	if got, want := strings.Join(names, ","), "postgres,schema,vault"; got != want {
		t.Errorf("readiness checks %s, want %s", got, want)
	}
	// The settings reach the server: the limits and the snapshot interval.
	if got := a.APIOptions().Limits; got.SSEHeartbeat != 100*time.Millisecond {
		t.Errorf("API limits %+v: the configured SSE heartbeat did not reach the server", got)
	}
	if l, ok := a.APIOptions().StateLoader.(*projection.Loader); !ok || l.Every != 1000 {
		t.Errorf("state loader %#v: want a projection.Loader saving a snapshot every 1,000 events (the default)", a.APIOptions().StateLoader)
	}
	if a.Vault() == nil || a.Ledger() == nil || a.Policies() == nil || a.Store() == nil || a.Events() == nil {
		t.Error("an accessor of the root answers nil")
	}
}

// Without Vault the root still serves: appends without personal data
// work, those with are refused (fail closed), and the lookup index, which
// needs the key, does not run.
func TestRootWithoutVaultFailsClosed(t *testing.T) {
	t.Parallel()
	a := open(t, testenv.MigratedDatabase(t), app.VaultConfig{})
	hs := serve(t, a)
	admin := client.New(hs.URL, adminToken, hs.Client())
	ctx := testenv.Context(t)
	writer, err := admin.CreateToken(ctx, "writer", wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	w := client.New(hs.URL, writer.Secret, hs.Client())
	plain := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"status":"new"}`)}
	if _, err := w.Append(ctx, "lead-1", wire.Exact(-1), plain); err != nil {
		t.Fatalf("append without personal data: %v", err)
	}
	personal := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "contacted", Data: json.RawMessage(`{"first-name":"Casey"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	_, err = w.Append(ctx, "lead-1", wire.Exact(0), personal)
	if p := (*wire.Problem)(nil); !errors.As(err, &p) || p.Type != api.ProblemTypeBase+"key-store-unavailable" || p.Status != 503 {
		t.Fatalf("append with personal data and no Vault: %v; want 503 key-store-unavailable", err)
	}
	if a.Vault() != nil {
		t.Error("Vault() answers a key store without Vault")
	}
	st, err := admin.Projections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var running []string
	for _, s := range st {
		running = append(running, s.Name)
	}
	if slices.Contains(running, "lookup") {
		t.Errorf("projections without Vault: %v; the lookup index needs its key", running)
	}
}

// Run starts what `lethe serve` runs besides the API: two processes on one
// database hear each other's token revocations and erasures, and the
// projections follow the log.
func TestRunListensAndProjects(t *testing.T) {
	t.Parallel()
	dbURL, vc := testenv.MigratedDatabase(t), lethesVault(t)
	a, b := open(t, dbURL, vc), open(t, dbURL, vc)
	ha, hb := serve(t, a), serve(t, b)
	ctx := testenv.Context(t)
	adminA := client.New(ha.URL, adminToken, ha.Client())
	tok, err := adminA.CreateToken(ctx, "writer+pii", wire.RoleWriter, wire.RolePIIReader)
	if err != nil {
		t.Fatal(err)
	}
	onB := client.New(hb.URL, tok.Secret, hb.Client())
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Casey","status":"new"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	if _, err := onB.Append(ctx, "lead-12", wire.Exact(-1), ev); err != nil {
		t.Fatal(err)
	}
	if _, err := onB.ReadStream(ctx, "lead-12", client.ReadOptions{}); err != nil { // b caches the key and the token
		t.Fatal(err)
	}

	// The projection runner: the analysis model counts the event.
	eventually(t, "analytics of lead", func() error {
		an, err := client.New(ha.URL, tok.Secret, ha.Client()).Analytics(ctx, "lead")
		if err != nil {
			return err
		}
		if len(an.Totals) == 0 {
			return fmt.Errorf("no totals yet: %+v", an)
		}
		return nil
	})

	// The erasure listener: b drops the key a erased.
	ref, err := b.Store().SubjectRef(ctx, "casey@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.Vault().CachedKey(ref, 1); !ok {
		t.Fatal("b did not cache casey's key on the read")
	}
	if _, err := adminA.Erase(ctx, "casey@example.com", wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b drops the erased key", func() error {
		if _, ok := b.Vault().CachedKey(ref, 1); ok {
			return fmt.Errorf("key of %s still cached", ref)
		}
		return nil
	})

	// The token listener: a revocation through a ends the token on b at
	// once, not after the authentication cache's TTL.
	if err := adminA.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b refuses the revoked token", func() error {
		_, err := onB.ReadStream(ctx, "lead-12", client.ReadOptions{})
		var p *wire.Problem
		if !errors.As(err, &p) || p.Status != 401 {
			return fmt.Errorf("read after revocation: %v", err)
		}
		return nil
	})
}

// eventually retries check until it passes (testenv.Eventually): the
// projections and the listeners work asynchronously.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	testenv.Eventually(t, what, 30*time.Second, check)
}

// A server's pool has room for the projections' catch-up connections on
// top of pgx's default, unless the URL sets its size.
func TestOpenPoolReservesCatchUpConnections(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	plain, err := app.OpenPool(ctx, dbURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	const reserved = app.ConnsPerCatchUp * app.MaxBuiltinProjections
	reserving, err := app.OpenPool(ctx, dbURL, reserved)
	if err != nil {
		t.Fatal(err)
	}
	defer reserving.Close()
	if got, want := reserving.Config().MaxConns, plain.Config().MaxConns+reserved; got != want {
		t.Errorf("reserving pool: %d connections, want %d", got, want)
	}
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	explicit, err := app.OpenPool(ctx, dbURL+sep+"pool_max_conns=3", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer explicit.Close()
	if got := explicit.Config().MaxConns; got != 3 {
		t.Errorf("pool_max_conns=3: %d connections, want 3 (the operator's choice)", got)
	}
}

// Open refuses a schema that is not current, and migrates when asked to.
func TestOpenChecksTheSchema(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.Database(t)
	_, err := app.Open(ctx, app.Config{Logger: slog.New(slog.DiscardHandler), DatabaseURL: dbURL})
	if err == nil || !strings.Contains(err.Error(), "lethe migrate") {
		t.Fatalf("open on an empty database: %v; want a refusal naming lethe migrate", err)
	}
	a, err := app.Open(ctx, app.Config{Logger: slog.New(slog.DiscardHandler), DatabaseURL: dbURL, Migrate: true})
	if err != nil {
		t.Fatalf("open with Migrate: %v", err)
	}
	a.Close()
}
