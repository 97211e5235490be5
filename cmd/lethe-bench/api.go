package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/app"
)

// apiConns is the HTTP load's concurrency: connections, load generator
// workers and requests in flight, and the Go API baseline's goroutines.
const apiConns = 32

// personalPaths are personalEvent's personal fields.
var personalPaths = []string{"/first-name", "/last-name", "/phone-number"}

func benchSubject(w int) string { return fmt.Sprintf("subject-%d@example.com", w) }

// benchAPI measures appends through the HTTP API, driven by a real load
// generator (vegeta) over loopback TCP, against the same appends through
// the Go API (forgettable.Store.Append) in the same process, in alternating
// rounds. Both sides append personalEvent (3 personal fields, warm key
// cache) with expected version "any", each stream written by one request
// at a time.
func benchAPI(ctx context.Context, b *bench) ([]figure, error) {
	// The server's request log at info level, as `lethe serve` logs: the
	// lines are formatted and dropped; warnings are printed.
	log := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(b.out, &slog.HandlerOptions{Level: slog.LevelWarn})))
	sh, err := newShredding(ctx, b, log)
	if err != nil {
		return nil, err
	}
	defer sh.stop()
	store := sh.store
	for w := range apiConns { // create and cache every subject's key
		if _, err := store.Append(ctx, fmt.Sprintf("warm-%d", w), eventstore.Any, personalEvent(0, benchSubject(w))); err != nil {
			return nil, err
		}
	}

	srv, err := startAPI(ctx, b, sh.app, log)
	if err != nil {
		return nil, err
	}
	defer srv.close()

	round := b.opts.duration / rounds
	// Warm-up, not counted: connections, the server's token cache, the
	// pool's connections.
	if _, err := srv.attack(ctx, round, &vegeta.Metrics{}); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	var (
		goAPI, httpAPI rate
		httpMetrics    vegeta.Metrics
		next           = make([]int, apiConns)
	)
	for range rounds {
		r, err := throughput(ctx, next, round, func(ctx context.Context, w, i int) (int, error) {
			_, err := store.Append(ctx, fmt.Sprintf("goapi-%d", w), eventstore.Any, personalEvent(i, benchSubject(w)))
			return 1, err
		})
		if err != nil {
			return nil, fmt.Errorf("go api: %w", err)
		}
		goAPI.add(r)
		if r, err = srv.attack(ctx, round, &httpMetrics); err != nil {
			return nil, err
		}
		httpAPI.add(r)
	}
	httpMetrics.Close()
	// Every answered append wrote its event.
	var written int64
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_id LIKE 'http-%'`).Scan(&written); err != nil {
		return nil, err
	}
	if written != srv.ok.Load() {
		return nil, fmt.Errorf("http: %d appends answered 201, %d events stored", srv.ok.Load(), written)
	}

	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	tput := compare(fmt.Sprintf("http_append_%dc", apiConns), "events/s", httpAPI, fmt.Sprintf("go_api_append_%dw", apiConns), goAPI, 0)
	tput.Note = fmt.Sprintf("vegeta, %d connections; p50 %v p99 %v (Go API p50 %v p99 %v)", apiConns,
		httpMetrics.Latencies.P50.Round(time.Microsecond), httpMetrics.Latencies.P99.Round(time.Microsecond),
		goAPI.percentile(0.5).Round(time.Microsecond), goAPI.percentile(0.99).Round(time.Microsecond))
	p99 := figure{Name: fmt.Sprintf("http_append_%dc_p99", apiConns), Value: ms(httpMetrics.Latencies.P99), Unit: "ms",
		Note: fmt.Sprintf("Go API p99 %.2f ms", ms(goAPI.percentile(0.99)))}
	// attack fails on any answer but 201, so this is 1 whenever figures
	// are printed; it is kept so that the results file says so.
	success := figure{Name: fmt.Sprintf("http_append_%dc_success", apiConns), Value: float64(srv.ok.Load()) / float64(srv.requests.Load()), Unit: "ratio",
		Note: fmt.Sprintf("%d requests (warm-up included), all 201 and stored; %d TCP connections opened", srv.requests.Load(), srv.conns.Load())}
	return []figure{tput, p99, success}, nil
}

// apiServer is a real api.Server on a loopback listener, with a writer
// token and an HTTP client for the load generator.
type apiServer struct {
	hs      *http.Server
	served  chan error
	stopRun context.CancelFunc // ends lethe's Run
	running chan struct{}      // closed when it has
	client  *http.Client
	header  http.Header
	urls    [apiConns]string // stream i's append URL
	slot    map[string]int   // and back

	seq      atomic.Int64 // payload sequence numbers
	conns    atomic.Int64 // TCP connections accepted
	requests atomic.Int64 // answered requests, all attacks
	ok       atomic.Int64 // of which 2xx
}

// startAPI serves a's API on 127.0.0.1 and runs a (its listeners and
// projections), as `lethe serve` does, with a writer token made for the
// load generator.
func startAPI(ctx context.Context, b *bench, lethe *app.App, log *slog.Logger) (*apiServer, error) {
	tokens := apipg.NewTokens(b.pool)
	secret, tok, err := api.GenerateToken("lethe-bench writer", []string{wire.RoleWriter}, "cli")
	if err != nil {
		return nil, err
	}
	if _, err := tokens.CreateToken(ctx, tok); err != nil {
		return nil, err
	}
	srv := lethe.Handler()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &apiServer{served: make(chan error, 1), slot: make(map[string]int, apiConns), running: make(chan struct{}),
		header: http.Header{"Authorization": {"Bearer " + secret}, "Content-Type": {"application/json"}}}
	runCtx, stopRun := context.WithCancel(context.Background())
	a.stopRun = stopRun
	go func() { defer close(a.running); lethe.Run(runCtx) }()
	a.hs = &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				a.conns.Add(1)
			}
		},
	}
	a.hs.RegisterOnShutdown(srv.BeginShutdown)
	go func() { a.served <- a.hs.Serve(ln) }()

	// One client for every attack, so that its connections stay open
	// between rounds; at most apiConns of them, no proxy.
	a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: apiConns,
		MaxConnsPerHost:     apiConns,
	}}
	for s := range apiConns {
		a.urls[s] = fmt.Sprintf("http://%s/v1/streams/http-%d/events", ln.Addr(), s)
		a.slot[a.urls[s]] = s
	}
	return a, nil
}

func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.client.CloseIdleConnections()
	_ = a.hs.Shutdown(ctx)
	<-a.served
	a.stopRun()
	<-a.running
}

// attack appends for d at the highest rate apiConns workers sustain, each
// request a new event (a fresh id) to a stream no other request in flight
// writes. Every result is added to m. Any answer but 201 Created fails the
// attack.
func (a *apiServer) attack(ctx context.Context, d time.Duration, m *vegeta.Metrics) (rate, error) {
	free := make(chan int, apiConns) // streams with no request in flight
	for s := range apiConns {
		free <- s
	}
	targeter := func(t *vegeta.Target) error {
		s := <-free
		body, err := json.Marshal(wire.AppendRequest{ExpectedVersion: wire.Any(), Events: []wire.NewEvent{{
			ID: eventstore.NewEventID().String(), Type: "contact-details-updated", Data: payload(int(a.seq.Add(1))), Metadata: meta,
			PersonalData: []wire.PersonalData{{Subject: benchSubject(s), Paths: personalPaths}},
		}}})
		if err != nil {
			free <- s
			return err
		}
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, a.urls[s], body, a.header
		return nil
	}
	// A zero rate is no pacing: with as many workers as the maximum, every
	// worker sends its next request as soon as it has the last answer.
	atk := vegeta.NewAttacker(vegeta.Client(a.client), vegeta.Workers(apiConns), vegeta.MaxWorkers(apiConns),
		vegeta.Redirects(vegeta.NoFollow))
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			atk.Stop()
		case <-done:
		}
	}()

	var (
		n, failed  int64
		first      string
		begin, end time.Time
	)
	for res := range atk.Attack(targeter, vegeta.Rate{Freq: 0}, d, "lethe-bench") {
		if s, ok := a.slot[res.URL]; ok {
			free <- s
		}
		m.Add(res)
		n++
		if begin.IsZero() || res.Timestamp.Before(begin) {
			begin = res.Timestamp
		}
		if e := res.End(); e.After(end) {
			end = e
		}
		// 201 Created: written. A 200 would be a retried append that
		// wrote nothing (a reused event id): a fault of the bench.
		if res.Code != http.StatusCreated {
			if failed++; first == "" {
				first = describeResult(res)
			}
		}
	}
	a.requests.Add(n)
	a.ok.Add(n - failed)
	if err := ctx.Err(); err != nil {
		return rate{}, err
	}
	if failed > 0 {
		return rate{}, fmt.Errorf("http: %d of %d requests failed, the first: %s", failed, n, first)
	}
	if n == 0 {
		return rate{}, errors.New("http: no request was sent")
	}
	return rate{units: n, elapsed: end.Sub(begin)}, nil
}

func describeResult(res *vegeta.Result) string {
	body := res.Body
	if len(body) > 300 {
		body = body[:300]
	}
	return fmt.Sprintf("%s %s: status %d, error %q, body %q", res.Method, res.URL, res.Code, res.Error, body)
}
