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

	a, err := app.Open(ctx, app.Config{
		Logger: log, DatabaseURL: c.DatabaseURL, Migrate: c.Migrate, Vault: c.Vault,
		AdminToken: adminToken, SnapshotEvery: snapshotEvery,
		Limits: api.Limits{MaxBodyBytes: int64(maxBody), MaxEventsPerAppend: maxEvents, MaxEventBytes: maxEventBytes},
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
