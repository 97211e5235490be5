package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/projection"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

// connsPerCatchUp is how many pool connections a projection holds while
// it catches up; maxBuiltinProjections, how many built-ins a server runs
// (analytics, and lookup with Vault).
const (
	connsPerCatchUp       = 2
	maxBuiltinProjections = 2
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c config
	f := newFlagSet("serve", getenv, stderr)
	c.bindDatabase(f)
	c.bindVaultAll(f)
	c.bindLogging(f)
	f.string(&c.ListenAddr, "listen", "LETHE_LISTEN_ADDR", "127.0.0.1:8080", "address to serve HTTP on")
	f.string(&c.TLSCert, "tls-cert", "LETHE_TLS_CERT", "", "PEM certificate (chain) file: serve HTTPS (with --tls-key)")
	f.string(&c.TLSKey, "tls-key", "LETHE_TLS_KEY", "", "PEM private key file of --tls-cert")
	f.bool(&c.Migrate, "migrate", "LETHE_MIGRATE", false, "apply database migrations before serving")
	f.duration(&c.ShutdownTimeout, "shutdown-timeout", "LETHE_SHUTDOWN_TIMEOUT", 30*time.Second, "how long to drain requests on shutdown")
	var maxBody, maxEvents, maxEventBytes, snapshotEvery int
	f.int(&snapshotEvery, "snapshot-every", "LETHE_SNAPSHOT_EVERY", 1000, "save a state snapshot when a state load folded this many events past the newest one")
	f.int(&maxBody, "max-body-bytes", "LETHE_MAX_BODY_BYTES", 4<<20, "largest request body accepted")
	f.int(&maxEvents, "max-events-per-append", "LETHE_MAX_EVENTS_PER_APPEND", 1000, "most events in one append")
	f.int(&maxEventBytes, "max-event-bytes", "LETHE_MAX_EVENT_BYTES", 1<<20, "largest event (data plus metadata)")
	if err := f.parse(args); err != nil {
		return err
	}
	if snapshotEvery < 0 {
		return errors.New("LETHE_SNAPSHOT_EVERY: want a positive number of events (0: the default, 1000)")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("TLS needs both LETHE_TLS_CERT and LETHE_TLS_KEY")
	}
	if err := checkLimits(maxBody, maxEvents, maxEventBytes); err != nil {
		return err
	}
	// The key pair is loaded before anything else happens, so that a bad
	// file stops the process at once instead of failing every handshake.
	var cert *tls.Certificate
	if c.TLSCert != "" {
		kp, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return fmt.Errorf("load the TLS key pair of LETHE_TLS_CERT and LETHE_TLS_KEY: %w", err)
		}
		cert = &kp
	}
	// The bootstrap admin token comes from the environment only: a flag
	// would show in the process list.
	adminToken := getenv("LETHE_ADMIN_TOKEN")
	if adminToken != "" && len(adminToken) < 32 {
		return errors.New("LETHE_ADMIN_TOKEN is too short: use at least 32 random characters (e.g. openssl rand -hex 32)")
	}
	log, err := c.logger(stderr)
	if err != nil {
		return err
	}

	// A projection catching up holds two connections (its batch's
	// transaction and its streaming read) for as long as it is behind:
	// the built-in two get theirs on top of pgx's default.
	pool, err := openPoolReserving(ctx, c.DatabaseURL, connsPerCatchUp*maxBuiltinProjections)
	if err != nil {
		return err
	}
	defer pool.Close()
	if c.Migrate {
		from, to, err := migrate(ctx, pool)
		if err != nil {
			return err
		}
		log.Info("database schema", "from", from, "to", to)
	}
	current, latest, err := schemaStatus(ctx, pool)
	if err != nil {
		return err
	}
	if current != latest {
		return fmt.Errorf("database schema is at version %d, this lethe needs %d: run `lethe migrate` or serve with --migrate", current, latest)
	}

	metrics := api.NewMetrics()
	checks := []api.ReadinessCheck{
		{Name: "postgres", Check: func(ctx context.Context) error {
			if err := pool.Ping(ctx); err != nil {
				log.Warn("postgres ping", "err", err)
				return errors.New("PostgreSQL is unreachable")
			}
			return nil
		}},
		{Name: "schema", Check: func(ctx context.Context) error {
			current, latest, err := schemaStatus(ctx, pool)
			if err != nil {
				log.Warn("schema status", "err", err)
				return errors.New("cannot read the schema version")
			}
			if current != latest {
				return fmt.Errorf("schema version %d, this lethe needs %d: run lethe migrate", current, latest)
			}
			return nil
		}},
	}
	events := postgres.New(pool, postgres.Options{Logger: log})
	defer events.Close()
	ledger := postgres.NewLedger(pool)
	var keys keystore.KeyStore = noKeyStore{}
	var blinder projpg.Blinder
	if c.vaultConfigured() {
		vkeys, err := openKeyStore(ctx, c, log, metrics)
		if err != nil {
			return err
		}
		keys, blinder = vkeys, vkeys
		checks = append(checks, api.ReadinessCheck{Name: "vault", Check: func(ctx context.Context) error {
			if err := vkeys.Health(ctx); err != nil {
				log.Warn("vault health", "err", err)
				return errors.New("Vault is unreachable, sealed or not initialised")
			}
			return nil
		}})
		log.Info("crypto-shredding on", "vault", c.VaultAddr, "mount", c.Vault.Mount, "prefix", c.Vault.Prefix)
		// Say at once if Vault is not there, but serve anyway: Vault may
		// come later, and /readyz reports it meanwhile.
		hctx, cancel := context.WithTimeout(ctx, vaultStartupCheckTimeout)
		err = vkeys.Health(hctx)
		cancel()
		if err != nil {
			log.Warn("Vault is not healthy: personal data cannot be appended or read until it is; serving anyway (see /readyz)",
				"vault", c.VaultAddr, "err", err)
		}
	} else {
		log.Warn("crypto-shredding off: no Vault configured (LETHE_VAULT_ADDR); appends with personal data are refused")
	}
	store := forgettable.New(events, keys, ledger, ledger, forgettable.Options{Logger: log})
	go ledger.Listen(ctx, log, keys.Invalidate, store.PolicyChanged, func() { store.PolicyChanged("") })
	tokens := apipg.NewTokens(pool)
	if adminToken == "" {
		log.Warn("no LETHE_ADMIN_TOKEN: only tokens created with `lethe token create` can call the API")
	}
	// Persisted projections: the analysis model always, the lookup index
	// when there is a key store (its blind indexes are keyed by a secret
	// in Vault).
	runner := projpg.NewRunner(pool, events, store, projpg.Options{Logger: log, Changes: events.ChangeNotifier()})
	builtins := []projpg.Projection{projpg.Analytics()}
	if blinder != nil {
		builtins = append(builtins, projpg.Lookup(blinder))
	}
	for _, p := range builtins {
		if err := runner.Register(p); err != nil {
			return err
		}
	}
	if need := int32(connsPerCatchUp*len(builtins) + 2); pool.Config().MaxConns < need {
		log.Warn("the database pool is small for the projections: catching up, they hold two connections each, and the API waits; raise pool_max_conns",
			"pool_max_conns", pool.Config().MaxConns, "want_at_least", need)
	}
	runnerDone := make(chan struct{})
	runCtx, stopRunner := context.WithCancel(ctx)
	go func() { defer close(runnerDone); runner.Run(runCtx) }()
	defer func() { stopRunner(); <-runnerDone }()
	server := api.NewServer(api.Options{
		Logger: log, Readiness: checks, Metrics: metrics,
		Events: store, Subjects: store, Policies: store, Subscriber: events, Erasures: ledger,
		Tokens: tokens, AccessLog: apipg.NewAccessLog(pool), Audit: apipg.NewAuditTrail(pool), AdminToken: adminToken,
		ReadModels:  projpg.NewService(pool, runner, blinder),
		StateLoader: &projection.Loader{Events: events, Snapshots: projpg.NewSnapshots(pool), Opener: store, Every: snapshotEvery},
		Limits:      api.Limits{MaxBodyBytes: int64(maxBody), MaxEventsPerAppend: maxEvents, MaxEventBytes: maxEventBytes},
	})
	go func() {
		if err := tokens.Listen(ctx, server.TokenRevoked); err != nil && ctx.Err() == nil {
			log.Error("token revocation listener stopped", "err", err)
		}
	}()
	return serveHTTP(ctx, log, c, cert, server)
}

// vaultStartupCheckTimeout bounds serve's one look at Vault's health before
// serving.
const vaultStartupCheckTimeout = 5 * time.Second

// checkLimits refuses limits that cannot be meant: negative ones (0 is the
// default), and more events per append than the store takes.
func checkLimits(maxBody, maxEvents, maxEventBytes int) error {
	for _, l := range []struct {
		v         int
		env, flag string
	}{
		{maxBody, "LETHE_MAX_BODY_BYTES", "--max-body-bytes"},
		{maxEvents, "LETHE_MAX_EVENTS_PER_APPEND", "--max-events-per-append"},
		{maxEventBytes, "LETHE_MAX_EVENT_BYTES", "--max-event-bytes"},
	} {
		if l.v < 0 {
			return fmt.Errorf("%s (%s) is %d: want 0 (the default) or more", l.env, l.flag, l.v)
		}
	}
	if maxEvents > eventstore.MaxEventsPerAppend {
		return fmt.Errorf("LETHE_MAX_EVENTS_PER_APPEND (--max-events-per-append) is %d: the store takes at most %d events per append",
			maxEvents, eventstore.MaxEventsPerAppend)
	}
	return nil
}

// noKeyStore is the key store of a server without Vault: every key is
// unavailable, so appends with personal data are refused (fail closed) and
// appends without any work.
type noKeyStore struct{}

var errNoVault = fmt.Errorf("no Vault configured (LETHE_VAULT_ADDR): %w", keystore.ErrUnavailable)

func (noKeyStore) SubjectRef(context.Context, string) (keystore.Ref, error) { return "", errNoVault }
func (noKeyStore) CurrentKey(context.Context, keystore.Ref) (keystore.Key, bool, error) {
	return keystore.Key{}, false, errNoVault
}
func (noKeyStore) Key(context.Context, keystore.Ref, int) (keystore.Key, error) {
	return keystore.Key{}, errNoVault
}
func (noKeyStore) Rotate(context.Context, keystore.Ref) (keystore.Key, error) {
	return keystore.Key{}, errNoVault
}
func (noKeyStore) Destroy(context.Context, keystore.Ref) (keystore.DestroyReport, error) {
	return keystore.DestroyReport{}, errNoVault
}
func (noKeyStore) Invalidate(keystore.Ref) {}

// serveHTTP serves until ctx ends, then drains in-flight requests: HTTPS
// with cert, plain HTTP without.
func serveHTTP(ctx context.Context, log *slog.Logger, c config, cert *tls.Certificate, handler http.Handler) error {
	ln, err := net.Listen("tcp", c.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.ListenAddr, err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// Subscriptions push their write deadline forward at every write.
		WriteTimeout:   60 * time.Second,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if s, ok := handler.(interface{ BeginShutdown() }); ok {
		srv.RegisterOnShutdown(s.BeginShutdown)
	}
	scheme := "http"
	if cert != nil {
		scheme = "https"
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}}
	}
	log.Info("lethe serving", "addr", scheme+"://"+ln.Addr().String(), "version", version)
	errc := make(chan error, 1)
	go func() {
		if cert != nil {
			errc <- srv.ServeTLS(ln, "", "") // the certificate is in TLSConfig
			return
		}
		errc <- srv.Serve(ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining requests", "timeout", c.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
