package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// ssePage is the batch size of subscriptions (also bounded by
// Limits.MaxPageBytes): what one subscriber holds in memory at most is two
// batches (one being written, one read ahead).
const ssePage = 500

// sseFeed is where a subscription's events come from: pages of stored
// events until it has caught up, then a live subscription from there.
//
// It is an interface with one implementation per kind of subscription,
// allFeed ($all) and streamFeed (one stream), rather than a struct of
// closures: each keeps its cursor (how far the catch-up has read) in named
// fields, which catchUp advances and live and checkpoint read.
type sseFeed interface {
	// catchUp returns the next page, opened, and whether the subscriber
	// has caught up with what is stored.
	catchUp(ctx context.Context) (events []forgettable.RecordedEvent, done bool, err error)
	// live follows from where catchUp stopped.
	live() *eventstore.Subscription
	// checkpoint is the position the subscriber has seen everything up to.
	checkpoint() int64
}

// allFeed is the feed of $all, filtered by event type and category.
type allFeed struct {
	s                 *Server
	access            forgettable.Access
	after             int64 // the position everything up to which is read
	types, categories []string
}

func (f *allFeed) catchUp(ctx context.Context) ([]forgettable.RecordedEvent, bool, error) {
	page, err := f.s.opts.Events.ReadAll(ctx, eventstore.ReadAllOptions{After: f.after, Limit: ssePage, Types: f.types, Categories: f.categories,
		MaxBytes: f.s.limits.MaxPageBytes}, f.access)
	if err != nil {
		return nil, false, err
	}
	f.after = page.Next
	// Held-back events are left to the live subscription, which waits for
	// them with a backoff. Lethe's own streams are never shown.
	return withoutSystem(page.Events), len(page.Events) < ssePage && !cutBySize(page.Events, f.s.limits.MaxPageBytes), nil
}

func (f *allFeed) live() *eventstore.Subscription {
	return f.s.opts.Subscriber.SubscribeToAll(eventstore.SubscribeAllOptions{After: f.after, Types: f.types, Categories: f.categories,
		MaxBytes: f.s.limits.MaxPageBytes})
}

func (f *allFeed) checkpoint() int64 { return f.after }

// streamFeed is the feed of one stream.
type streamFeed struct {
	s        *Server
	access   forgettable.Access
	streamID string
	next     int64 // the version to read next
	last     int64 // the position of the last event read (0: none yet)
}

func (f *streamFeed) catchUp(ctx context.Context) ([]forgettable.RecordedEvent, bool, error) {
	events, err := f.s.opts.Events.ReadStream(ctx, f.streamID, eventstore.ReadStreamOptions{From: f.next, Limit: ssePage, MaxBytes: f.s.limits.MaxPageBytes}, f.access)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return nil, true, nil // not yet: the live subscription waits for it
	}
	if err != nil {
		return nil, false, err
	}
	if n := len(events); n > 0 {
		f.next, f.last = events[n-1].Version+1, events[n-1].Position
	}
	return events, len(events) < ssePage && !cutBySize(events, f.s.limits.MaxPageBytes), nil
}

// cutBySize reports whether a page read with MaxBytes maxBytes may have
// been cut by size: its events reach maxBytes.
func cutBySize(events []forgettable.RecordedEvent, maxBytes int) bool {
	size := 0
	for _, e := range events {
		size += e.Size
	}
	return size >= maxBytes
}

func (f *streamFeed) live() *eventstore.Subscription {
	return f.s.opts.Subscriber.SubscribeToStream(f.streamID, eventstore.SubscribeStreamOptions{From: f.next, MaxBytes: f.s.limits.MaxPageBytes})
}

func (f *streamFeed) checkpoint() int64 { return f.last }

func (s *Server) subscribeAll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err := fromPosition(q)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	after := max(from-1, 0)
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		p, err := strconv.ParseInt(id, 10, 64)
		if err != nil || p < 0 {
			s.problem(w, r, http.StatusBadRequest, "invalid-query", "Last-Event-ID: want the position of the last event received.")
			return
		}
		after = p
	}
	a := access(r)
	s.serveSSE(w, r, a, &allFeed{s: s, access: a, after: after, types: q["type"], categories: q["category"]})
}

func (s *Server) subscribeStream(w http.ResponseWriter, r *http.Request) {
	streamID, ok := s.readableStream(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	if err := checkQuery(q, "from"); err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	next, err := queryInt(q, "from", 0, 0, eventstore.EndOfStream-1)
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	var last int64
	if id := r.Header.Get("Last-Event-ID"); id != "" {
		p, err := strconv.ParseInt(id, 10, 64)
		if err != nil || p < 0 {
			s.problem(w, r, http.StatusBadRequest, "invalid-query", "Last-Event-ID: want the position of the last event received.")
			return
		}
		v, err := s.opts.Subscriber.VersionAt(r.Context(), streamID, p)
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			s.problem(w, r, http.StatusBadRequest, "invalid-query", "Last-Event-ID: this stream has no event at that position.")
			return
		}
		if err != nil {
			s.fail(w, r, err)
			return
		}
		next, last = v+1, p
	}
	a := access(r)
	s.serveSSE(w, r, a, &streamFeed{s: s, access: a, streamID: streamID, next: next, last: last})
}

// serveSSE streams a feed as Server-Sent Events: each event with its
// position as id, "caught-up" once the stored events are sent, then the
// live events, with heartbeats while idle (see sseStream for what is
// guaranteed along the way).
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, a forgettable.Access, feed sseFeed) {
	tok := actor(r)
	if !s.subs.take(tok) {
		s.problem(w, r, http.StatusTooManyRequests, "too-many-subscriptions",
			fmt.Sprintf("This token has %d subscriptions open on this server, the most it may; close one first.", s.limits.MaxSubscriptionsPerToken))
		return
	}
	defer s.subs.release(tok)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel() // stops the read-ahead of the live phase
	s.metrics.subscribers.Inc()
	defer s.metrics.subscribers.Dec()
	st := newSSEStream(s, w, r, a)
	if err := st.start(); err != nil {
		return // the client is gone
	}
	if !st.catchUp(ctx, feed) {
		return
	}
	if err := st.caughtUp(feed.checkpoint()); err != nil {
		return
	}
	st.live(ctx, feed)
}

// sseStream is one subscriber's event stream, from the answer's headers to
// its end.
//
// A subscriber that does not take a batch within SSEWriteTimeout is
// disconnected (it resumes with Last-Event-ID), so a slow client never
// makes the server buffer more than two batches: the one being written and
// the one read ahead.
//
// The token is checked again before each batch is sent and at each
// heartbeat (a lookup in the authentication cache, which a revocation
// clears at once; the token store at most every AuthCacheTTL): once it is
// revoked, the stream ends with an unauthenticated error and sends nothing
// more. The roles need no second check: a token's roles never change, so a
// token that still authenticates still has the roles that let it in.
type sseStream struct {
	s      *Server
	w      http.ResponseWriter
	r      *http.Request
	rc     *http.ResponseController
	access forgettable.Access
	hash   [32]byte // of the token, to check it again
}

func newSSEStream(s *Server, w http.ResponseWriter, r *http.Request, a forgettable.Access) *sseStream {
	hash, _ := tokenHashFrom(r.Context())
	return &sseStream{s: s, w: w, r: r, rc: http.NewResponseController(w), access: a, hash: hash}
}

// start answers 200 with the headers of an event stream, and opens it with
// a comment so that the client sees at once that it is subscribed.
func (st *sseStream) start() error {
	h := st.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering
	st.w.WriteHeader(http.StatusOK)
	return st.write([]byte(": lethe subscription\n\n"))
}

// catchUp sends the stored events, page by page, until the feed has caught
// up; false if the stream ended instead (an error, the client gone, or the
// server shutting down).
func (st *sseStream) catchUp(ctx context.Context, feed sseFeed) (ok bool) {
	for {
		events, done, err := feed.catchUp(ctx)
		if err == nil {
			err = st.send(ctx, events)
		}
		if err != nil {
			st.fail(ctx, err)
			return false
		}
		if done {
			return true
		}
		select {
		case <-st.s.closing:
			st.shutdown()
			return false
		default:
		}
	}
}

// caughtUp tells the subscriber that it has every stored event up to
// position.
func (st *sseStream) caughtUp(position int64) error {
	return st.write(fmt.Appendf(nil, "event: caught-up\ndata: {\"position\":%d}\n\n", position))
}

// sseBatch is what the read-ahead hands to the writer: live events, not
// yet opened, or the error that ended the subscription.
type sseBatch struct {
	events []eventstore.RecordedEvent
	err    error
}

// live follows the feed's live subscription until the stream ends: batches
// as they come (one read ahead while the previous one is written),
// heartbeats while idle.
func (st *sseStream) live(ctx context.Context, feed sseFeed) {
	batches := make(chan sseBatch)
	go st.readAhead(ctx, feed.live(), batches)
	heartbeat := time.NewTicker(st.s.limits.SSEHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case b, ok := <-batches:
			if !ok {
				return
			}
			if err := st.sendLive(ctx, b); err != nil {
				st.fail(ctx, err)
				return
			}
		case <-heartbeat.C:
			if !st.heartbeat(ctx) {
				return
			}
		case <-st.s.closing:
			st.shutdown()
			return
		case <-ctx.Done():
			return
		}
	}
}

// readAhead reads sub into batches. The channel is unbuffered, so it reads
// at most one batch ahead of the one being written. It stops after handing
// over an error, or when ctx ends, and then closes batches.
func (st *sseStream) readAhead(ctx context.Context, sub *eventstore.Subscription, batches chan<- sseBatch) {
	defer close(batches)
	for {
		b := nextBatch(ctx, sub, st.s.limits.MaxPageBytes)
		select {
		case batches <- b:
		case <-ctx.Done():
			return
		}
		if b.err != nil {
			return
		}
	}
}

// nextBatch waits for the next live event, then takes what else sub has
// buffered already, up to a page. An error after the first event ends the
// batch; the next call meets it again.
func nextBatch(ctx context.Context, sub *eventstore.Subscription, maxBytes int) sseBatch {
	e, err := sub.Next(ctx)
	if err != nil {
		return sseBatch{err: err}
	}
	events, size := []eventstore.RecordedEvent{e}, e.Size
	for sub.Buffered() > 0 && len(events) < ssePage && size < maxBytes {
		e, err := sub.Next(ctx)
		if err != nil {
			break
		}
		events, size = append(events, e), size+e.Size
	}
	return sseBatch{events: events}
}

// sendLive opens a batch of live events and sends it.
func (st *sseStream) sendLive(ctx context.Context, b sseBatch) error {
	if b.err != nil {
		return b.err
	}
	// Lethe's own streams are never shown.
	events := slices.DeleteFunc(b.events, func(e eventstore.RecordedEvent) bool { return eventstore.IsSystemStream(e.StreamID) })
	opened, err := st.s.opts.Events.Open(ctx, events, st.access)
	if err != nil {
		return err
	}
	return st.send(ctx, opened)
}

// send writes a batch of events, each with its position as id, once the
// token is checked again and the access is recorded: nothing is sent that
// the access log does not show.
func (st *sseStream) send(ctx context.Context, events []forgettable.RecordedEvent) error {
	if len(events) == 0 {
		return nil
	}
	if err := st.authenticated(ctx); err != nil {
		return err
	}
	if err := st.s.recordAccess(ctx, st.r, st.access, events); err != nil {
		return err
	}
	var buf []byte
	for _, e := range events {
		b, err := json.Marshal(toWireEvent(e))
		if err != nil {
			return err
		}
		buf = fmt.Appendf(buf, "id: %d\ndata: %s\n\n", e.Position, b)
	}
	st.s.metrics.read.Add(float64(len(events)))
	return st.write(buf)
}

// heartbeat checks the token again and tells the subscriber the stream is
// alive; false once the stream has ended.
func (st *sseStream) heartbeat(ctx context.Context) (ok bool) {
	if err := st.authenticated(ctx); err != nil {
		st.fail(ctx, err)
		return false
	}
	return st.write([]byte(": heartbeat\n\n")) == nil
}

// authenticated checks the token again: ErrUnauthenticated once it is
// revoked.
func (st *sseStream) authenticated(ctx context.Context) error {
	_, err := st.s.principal(ctx, st.hash)
	return err
}

// write writes b and flushes it, the write deadline pushed forward first:
// a subscriber gets SSEWriteTimeout to take each write.
func (st *sseStream) write(b []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.s.limits.SSEWriteTimeout))
	if _, err := st.w.Write(b); err != nil {
		return &sseWriteError{err}
	}
	if err := st.rc.Flush(); err != nil {
		return &sseWriteError{err}
	}
	return nil
}

// sseWriteError is a write to the subscriber that failed: it went away, or
// did not take the write within SSEWriteTimeout.
type sseWriteError struct{ err error }

func (e *sseWriteError) Error() string { return "write to the subscriber: " + e.err.Error() }
func (e *sseWriteError) Unwrap() error { return e.err }

// fail ends the stream on err. A subscriber that could not take a write
// (too slow, or gone) is just disconnected: it resumes with
// Last-Event-ID. Any other error goes in an error event (the stream
// answered 200 already), mapped as every error answer is, with what a
// subscriber should do.
func (st *sseStream) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	s, r := st.s, st.r
	var werr *sseWriteError
	if errors.As(err, &werr) {
		var timeout interface{ Timeout() bool }
		if errors.As(err, &timeout) && timeout.Timeout() {
			s.log.Info("subscriber too slow: disconnected", "route", routePattern(r), "request_id", requestID(r))
		}
		return
	}
	p := s.problemOf(r, err)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		tok, _ := principalFrom(r.Context())
		s.log.Info("subscription ended: token revoked", "route", routePattern(r), "request_id", requestID(r), "token_id", tok.TokenID)
		p.Detail = "The token was revoked: the subscription ends."
	case p.Type == ProblemTypeBase+"key-store-unavailable":
		p.Detail = "The key store (Vault) cannot be reached; reconnect later with Last-Event-ID."
	case p.Type == ProblemTypeBase+"database-unavailable":
		p.Detail = "The database (PostgreSQL) cannot be reached; reconnect later with Last-Event-ID."
	case p.Status >= 500:
		p.Detail = "The subscription failed; reconnect with Last-Event-ID."
	}
	b, _ := json.Marshal(p)
	retry := ""
	if p.Status == http.StatusServiceUnavailable {
		retry = "retry: " + retryAfterSeconds + "000\n" // an EventSource's reconnection delay, in ms
	}
	_ = st.write(fmt.Appendf(nil, "event: error\n%sdata: %s\n\n", retry, b))
}

// shutdown tells the subscriber that the server is shutting down.
func (st *sseStream) shutdown() {
	_ = st.write([]byte("event: shutdown\ndata: {}\n\n"))
}
