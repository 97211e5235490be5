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
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/app"
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
	var snapshotEvery int
	f.int(&snapshotEvery, "snapshot-every", "LETHE_SNAPSHOT_EVERY", 1000, "save a state snapshot when a state load folded this many events past the newest one")
	limits := limitFlags()
	for _, l := range limits {
		f.int(&l.v, l.flag, l.env, l.def, l.help)
	}
	if err := f.parse(args); err != nil {
		return err
	}
	if snapshotEvery < 0 {
		return errors.New("LETHE_SNAPSHOT_EVERY: want a positive number of events (0: the default, 1000)")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("TLS needs both LETHE_TLS_CERT and LETHE_TLS_KEY")
	}
	lim, err := checkLimits(limits)
	if err != nil {
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

	a, err := app.Open(ctx, app.Config{
		Logger: log, DatabaseURL: c.DatabaseURL, Migrate: c.Migrate, Vault: c.Vault,
		AdminToken: adminToken, SnapshotEvery: snapshotEvery,
		Limits: lim,
	})
	if err != nil {
		return err
	}
	defer a.Close()
	if adminToken == "" {
		log.Warn("no LETHE_ADMIN_TOKEN: only tokens created with `lethe token create` can call the API")
	}
	a.Check(ctx)
	runCtx, stop := context.WithCancel(ctx)
	running := make(chan struct{})
	go func() { defer close(running); a.Run(runCtx) }()
	defer func() { stop(); <-running }()
	return serveHTTP(ctx, log, c, cert, a.Handler())
}

// limitFlag is a limit of api.Limits set by a flag and a variable.
type limitFlag struct {
	flag, env string
	def       int
	help      string
	set       func(*api.Limits, int)
	v         int
}

// limitFlags are the limits `lethe serve` takes (docs/operations.md lists
// them).
func limitFlags() []*limitFlag {
	return []*limitFlag{
		{"max-body-bytes", "LETHE_MAX_BODY_BYTES", 4 << 20, "largest request body accepted",
			func(l *api.Limits, v int) { l.MaxBodyBytes = int64(v) }, 0},
		{"max-events-per-append", "LETHE_MAX_EVENTS_PER_APPEND", 1000, "most events in one append",
			func(l *api.Limits, v int) { l.MaxEventsPerAppend = v }, 0},
		{"max-event-bytes", "LETHE_MAX_EVENT_BYTES", 1 << 20, "largest event (data plus metadata)",
			func(l *api.Limits, v int) { l.MaxEventBytes = v }, 0},
		{"max-leaves-per-event", "LETHE_MAX_LEAVES_PER_EVENT", 1000, "most values (strings, numbers, booleans, nulls) in one event's data",
			func(l *api.Limits, v int) { l.MaxLeavesPerEvent = v }, 0},
		{"max-leaves-per-append", "LETHE_MAX_LEAVES_PER_APPEND", 100_000, "most values in the data of all the events of one append",
			func(l *api.Limits, v int) { l.MaxLeavesPerAppend = v }, 0},
		{"max-subjects-per-append", "LETHE_MAX_SUBJECTS_PER_APPEND", 100, "most distinct data subjects one append declares",
			func(l *api.Limits, v int) { l.MaxSubjectsPerAppend = v }, 0},
		{"max-page-bytes", "LETHE_MAX_PAGE_BYTES", 16 << 20, "a page of a read ends once its events reach this many bytes",
			func(l *api.Limits, v int) { l.MaxPageBytes = v }, 0},
		{"max-subscriptions-per-token", "LETHE_MAX_SUBSCRIPTIONS_PER_TOKEN", 16, "most subscriptions one token holds open on this process",
			func(l *api.Limits, v int) { l.MaxSubscriptionsPerToken = v }, 0},
	}
}

// checkLimits refuses limits that cannot be meant: negative ones (0 is the
// default), and more events per append than the store takes. It returns
// the limits as api.Limits.
func checkLimits(flags []*limitFlag) (api.Limits, error) {
	var lim api.Limits
	for _, l := range flags {
		if l.v < 0 {
			return api.Limits{}, fmt.Errorf("%s (--%s) is %d: want 0 (the default) or more", l.env, l.flag, l.v)
		}
		l.set(&lim, l.v)
	}
	if lim.MaxEventsPerAppend > eventstore.MaxEventsPerAppend {
		return api.Limits{}, fmt.Errorf("LETHE_MAX_EVENTS_PER_APPEND (--max-events-per-append) is %d: the store takes at most %d events per append",
			lim.MaxEventsPerAppend, eventstore.MaxEventsPerAppend)
	}
	return lim, nil
}

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
