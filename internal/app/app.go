// Package app is Lethe's composition root: the one place that assembles
// the server from its adapters. `lethe serve`, the `lethe` commands that
// need the crypto-shredding stack, `lethe-bench`, the end-to-end tests and
// the lead example all build it here, so that what is tested and measured
// is what users run.
//
// The life of an App: Open (connect, check the schema, wire the adapters)
// → Handler (the HTTP API) → Run (the background work: the erasure and
// policy listener, the token revocation listener, the projection runner)
// → Close. A one-shot command opens an App, uses Store, and closes it
// without running it.
//
// Open takes settings already parsed (Config): reading flags and the
// environment stays in cmd/lethe.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	fpg "github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/vault"
	"github.com/lethe-store/lethe/projection"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

// ConnsPerCatchUp is how many pool connections a projection holds while
// it catches up (its batch's transaction and its streaming read);
// MaxBuiltinProjections, how many built-ins a server runs (analytics, and
// the lookup index with Vault). OpenPool reserves their product.
const (
	ConnsPerCatchUp       = 2
	MaxBuiltinProjections = 2
)

// vaultStartupCheckTimeout bounds Open's one look at Vault's health.
const vaultStartupCheckTimeout = 5 * time.Second

// Config is what an App is built from: settings, already parsed. The zero
// values are the defaults of `lethe serve`.
type Config struct {
	// Logger receives the server's log; nil: slog.Default().
	Logger *slog.Logger

	// DatabaseURL is PostgreSQL's URL or DSN; Open opens a pool with
	// connections reserved for the projections. Ignored when Pool is set.
	DatabaseURL string
	// Pool, if set, is used instead, and Close leaves it open (the bench
	// shares one pool between its baseline and Lethe).
	Pool *pgxpool.Pool
	// Migrate applies pending migrations before anything else. Without
	// it, Open refuses a schema that is not current.
	Migrate bool

	// Vault is how the key store is reached. Without an address or a
	// client, crypto-shredding is off: appends with personal data are
	// refused (fail closed), and the lookup index does not run.
	Vault VaultConfig

	// AdminToken is the bootstrap admin token (LETHE_ADMIN_TOKEN); empty:
	// none.
	AdminToken string
	// Limits bound what a request may ask (zero fields: the defaults).
	Limits api.Limits
	// SnapshotEvery saves a state snapshot when a state load folded this
	// many events past the newest one (0: 1,000).
	SnapshotEvery int
	// Folders and Upcasters are the API's domain folds and schema
	// upcasters (see api.Options); nil: none. The projection runner gets
	// the same upcasters.
	Folders   map[string]projection.Folder
	Upcasters *projection.Upcasters
	// Projections are read models of the application's, registered with
	// the built-ins (docs/operations.md, "Your own projection").
	Projections []projpg.Projection
	// ProjectionIdle is how long a caught-up projection waits when no
	// append is announced (0: the runner's default, 1s).
	ProjectionIdle time.Duration

	// AdjustAPI, if set, has the last word on the API's options before
	// the server is built: tests wrap a port to inject a fault. Production
	// code leaves it nil.
	AdjustAPI func(*api.Options)
}

// App is Lethe assembled: the event store, the key store, the ledger, the
// forgettable store, the projections and the HTTP API over one PostgreSQL
// pool. It is safe for concurrent use.
type App struct {
	log      *slog.Logger
	pool     *pgxpool.Pool
	ownPool  bool
	events   *espg.Store
	keys     keystore.Store
	vault    *vault.Store // nil without Vault
	ledger   *fpg.Ledger
	policies *fpg.Policies
	store    *forgettable.Store
	tokens   *apipg.Tokens
	runner   *projpg.Runner
	apiOpts  api.Options
	server   *api.Server
	// projections is how many read models the runner runs.
	projections int

	closeOnce sync.Once
}

// Open connects to PostgreSQL (and Vault, if configured), checks the
// schema and wires every adapter. It does not ask Vault anything (unless
// an AppRole must log in): Vault may come later; Check says whether it is
// healthy.
func Open(ctx context.Context, cfg Config) (_ *App, err error) {
	a := &App{log: cfg.Logger, pool: cfg.Pool}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.pool == nil {
		if a.pool, err = OpenPool(ctx, cfg.DatabaseURL, ConnsPerCatchUp*(MaxBuiltinProjections+len(cfg.Projections))); err != nil {
			return nil, err
		}
		a.ownPool = true
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if err := a.checkSchema(ctx, cfg.Migrate); err != nil {
		return nil, err
	}
	metrics := api.NewMetrics()
	a.events = espg.New(a.pool, espg.Options{Logger: a.log})
	a.ledger = fpg.NewLedger(a.pool)
	a.policies = fpg.NewPolicies(a.pool)
	a.keys = noKeyStore{}
	if cfg.Vault.configured() {
		if a.vault, err = openVault(ctx, cfg.Vault, a.log, metrics, fpg.NewReferenceBinding(a.pool), a.ledger); err != nil {
			return nil, err
		}
		a.keys = a.vault
	} else {
		a.log.Warn("crypto-shredding off: no Vault configured (LETHE_VAULT_ADDR); appends with personal data are refused")
	}
	a.store = forgettable.New(a.events, a.keys, a.ledger, a.policies, forgettable.Options{Logger: a.log})
	a.tokens = apipg.NewTokens(a.pool)
	if err := a.registerProjections(cfg); err != nil {
		return nil, err
	}
	a.apiOpts = a.apiOptions(cfg, metrics)
	opts := a.apiOpts
	if cfg.AdjustAPI != nil {
		cfg.AdjustAPI(&opts)
	}
	a.server = api.NewServer(opts)
	return a, nil
}

// checkSchema migrates if asked to, then refuses a schema that is not the
// one this build needs.
func (a *App) checkSchema(ctx context.Context, migrate bool) error {
	if migrate {
		from, to, err := Migrate(ctx, a.pool)
		if err != nil {
			return err
		}
		a.log.Info("database schema", "from", from, "to", to)
	}
	current, latest, err := SchemaStatus(ctx, a.pool)
	if err != nil {
		return err
	}
	if current != latest {
		return fmt.Errorf("database schema is at version %d, this lethe needs %d: run `lethe migrate` or serve with --migrate", current, latest)
	}
	return nil
}

// registerProjections registers the built-in read models — the analysis
// model always, the lookup index when there is a key store (its blind
// indexes are keyed by a secret in Vault) — and the application's.
func (a *App) registerProjections(cfg Config) error {
	a.runner = projpg.NewRunner(a.pool, a.events, a.store, projpg.Options{Logger: a.log, Changes: a.events.ChangeNotifier(),
		Idle: cfg.ProjectionIdle, Upcasters: cfg.Upcasters})
	builtins := []projpg.Projection{projpg.Analytics()}
	if a.vault != nil {
		builtins = append(builtins, projpg.Lookup(a.vault))
	}
	for _, p := range append(builtins, cfg.Projections...) {
		if err := a.runner.Register(p); err != nil {
			return err
		}
	}
	a.projections = len(builtins) + len(cfg.Projections)
	return nil
}

// apiOptions wires every port of the HTTP API.
func (a *App) apiOptions(cfg Config, metrics *api.Metrics) api.Options {
	var blinder projpg.Blinder
	if a.vault != nil {
		blinder = a.vault
	}
	snapshotEvery := cfg.SnapshotEvery
	if snapshotEvery <= 0 {
		snapshotEvery = 1000
	}
	return api.Options{
		Logger: a.log, Readiness: a.readiness(), Metrics: metrics, Limits: cfg.Limits,
		Events: a.store, Subjects: a.store, Policies: a.store, Subscriber: a.events, Erasures: a.ledger,
		Tokens: a.tokens, AccessLog: apipg.NewAccessLog(a.pool), Audit: apipg.NewAuditTrail(a.pool), AdminToken: cfg.AdminToken,
		ReadModels:  projpg.NewService(a.pool, a.runner, blinder),
		StateLoader: &projection.Loader{Events: a.events, Snapshots: projpg.NewSnapshots(a.pool), Opener: a.store, Every: snapshotEvery},
		Folders:     cfg.Folders, Upcasters: cfg.Upcasters,
	}
}

// readiness are the checks behind /readyz: PostgreSQL, the schema, and
// Vault when configured. Their errors say what is wrong without quoting a
// driver's text; the log has it.
func (a *App) readiness() []api.ReadinessCheck {
	checks := []api.ReadinessCheck{
		{Name: "postgres", Check: func(ctx context.Context) error {
			if err := a.pool.Ping(ctx); err != nil {
				a.log.Warn("postgres ping", "err", err)
				return errors.New("PostgreSQL is unreachable")
			}
			return nil
		}},
		{Name: "schema", Check: func(ctx context.Context) error {
			current, latest, err := SchemaStatus(ctx, a.pool)
			if err != nil {
				a.log.Warn("schema status", "err", err)
				return errors.New("cannot read the schema version")
			}
			if current != latest {
				return fmt.Errorf("schema version %d, this lethe needs %d: run lethe migrate", current, latest)
			}
			return nil
		}},
	}
	if a.vault != nil {
		checks = append(checks, api.ReadinessCheck{Name: "vault", Check: func(ctx context.Context) error {
			if err := a.vault.Health(ctx); err != nil {
				a.log.Warn("vault health", "err", err)
				return errors.New("Vault is unreachable, sealed or not initialised")
			}
			return nil
		}})
	}
	return checks
}

// Handler is the HTTP API. Serve it with BeginShutdown registered on the
// http.Server's shutdown (subscriptions end with a shutdown event).
func (a *App) Handler() *api.Server { return a.server }

// Run does the server's background work until ctx ends: it listens for
// erasures and policy changes of every process (dropping cached keys and
// policies), for token revocations (dropping cached tokens), and runs the
// projections. It returns when all of it has stopped.
func (a *App) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		// On every (re)connection the listener may have missed
		// announcements: every cache that can decrypt or that decides
		// what is sealed is dropped.
		a.ledger.Listen(ctx, a.log, a.keys.Invalidate, a.store.PolicyChanged, func() {
			a.store.PolicyChanged("")
			if a.vault != nil {
				a.vault.InvalidateAll()
			}
		})
	})
	wg.Go(func() {
		if err := a.tokens.Listen(ctx, a.server.TokenRevoked); err != nil && ctx.Err() == nil {
			a.log.Error("token revocation listener stopped", "err", err)
		}
	})
	wg.Go(func() { a.runner.Run(ctx) })
	wg.Wait()
}

// Close releases the event store and, unless Config.Pool was given, the
// pool. Stop Run first.
func (a *App) Close() {
	a.closeOnce.Do(func() {
		if a.events != nil {
			a.events.Close()
		}
		if a.ownPool {
			a.pool.Close()
		}
	})
}

// Store is the forgettable store: appends with personal data, reads,
// erasure, holds, rotation, exports.
func (a *App) Store() *forgettable.Store { return a.store }

// Events is the event store under it (subscriptions, verification).
func (a *App) Events() *espg.Store { return a.events }

// Ledger is the erasure ledger (receipts, holds, re-admissions).
func (a *App) Ledger() *fpg.Ledger { return a.ledger }

// Policies is the protection policy store.
func (a *App) Policies() *fpg.Policies { return a.policies }

// Vault is the key store, or nil when crypto-shredding is off.
func (a *App) Vault() *vault.Store { return a.vault }

// Pool is the PostgreSQL pool.
func (a *App) Pool() *pgxpool.Pool { return a.pool }

// APIOptions are the API's options as the root wired them, before
// Config.AdjustAPI: a test checks that no port is missing.
func (a *App) APIOptions() api.Options { return a.apiOpts }

// Check logs what a server's operator should know before it serves: a
// pool too small for the projections' catch-up connections, and Vault
// not healthy (it may come later; the server serves anyway, and /readyz
// reports it meanwhile). It waits at most 5 s for Vault. One-shot commands
// do not call it.
func (a *App) Check(ctx context.Context) {
	if need := int32(ConnsPerCatchUp*a.projections + 2); a.pool.Config().MaxConns < need {
		a.log.Warn("the database pool is small for the projections: catching up, they hold two connections each, and the API waits; raise pool_max_conns",
			"pool_max_conns", a.pool.Config().MaxConns, "want_at_least", need)
	}
	if a.vault == nil {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, vaultStartupCheckTimeout)
	defer cancel()
	if err := a.vault.Health(hctx); err != nil && ctx.Err() == nil {
		a.log.Warn("Vault is not healthy: personal data cannot be appended or read until it is; serving anyway (see /readyz)", "err", err)
	}
}
