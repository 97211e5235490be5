package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
)

// ssePage is the batch size of subscriptions: what one subscriber holds in
// memory at most is two batches (one being written, one read ahead).
const ssePage = 500

// sseFeed is where a subscription's events come from: pages of stored
// events until it has caught up, then a live subscription from there.
type sseFeed struct {
	// catchUp returns the next page, opened, and whether the subscriber
	// has caught up with what is stored.
	catchUp func(ctx context.Context) (events []forgettable.RecordedEvent, done bool, err error)
	// live follows from where catchUp stopped.
	live func() *eventstore.Subscription
	// checkpoint is the position the subscriber has seen everything up to.
	checkpoint func() int64
}

func (s *Server) subscribeAll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := checkQuery(q, "fromPosition", "type", "category"); err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return
	}
	from, err := queryInt(q, "fromPosition", 0, 0, 1<<62)
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
	types, categories := q["type"], q["category"]
	a := access(r)
	s.serveSSE(w, r, a, sseFeed{
		catchUp: func(ctx context.Context) ([]forgettable.RecordedEvent, bool, error) {
			page, err := s.opts.Events.ReadAll(ctx, eventstore.ReadAllOptions{After: after, Limit: ssePage, Types: types, Categories: categories}, a)
			if err != nil {
				return nil, false, err
			}
			after = page.Next
			// Held-back events are left to the live subscription, which
			// waits for them with a backoff.
			return page.Events, len(page.Events) < ssePage, nil
		},
		live: func() *eventstore.Subscription {
			return s.opts.Subscriber.SubscribeToAll(eventstore.SubscribeAllOptions{After: after, Types: types, Categories: categories})
		},
		checkpoint: func() int64 { return after },
	})
}

func (s *Server) subscribeStream(w http.ResponseWriter, r *http.Request) {
	streamID, ok := s.streamParam(w, r)
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
	s.serveSSE(w, r, a, sseFeed{
		catchUp: func(ctx context.Context) ([]forgettable.RecordedEvent, bool, error) {
			events, err := s.opts.Events.ReadStream(ctx, streamID, eventstore.ReadStreamOptions{From: next, Limit: ssePage}, a)
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				return nil, true, nil // not yet: the live subscription waits for it
			}
			if err != nil {
				return nil, false, err
			}
			if n := len(events); n > 0 {
				next, last = events[n-1].Version+1, events[n-1].Position
			}
			return events, len(events) < ssePage, nil
		},
		live: func() *eventstore.Subscription {
			return s.opts.Subscriber.SubscribeToStream(streamID, eventstore.SubscribeStreamOptions{From: next})
		},
		checkpoint: func() int64 { return last },
	})
}

// serveSSE streams a feed as Server-Sent Events: each event with its
// position as id, "caught-up" once the stored events are sent, heartbeats
// while idle. A subscriber that does not take a batch within
// SSEWriteTimeout is disconnected (it resumes with Last-Event-ID), so a slow
// client never makes the server buffer more than two batches.
//
// The token is checked again before each batch is sent and at each
// heartbeat (a lookup in the authentication cache, which a revocation
// clears at once; the token store at most every AuthCacheTTL): once it is
// revoked, the stream ends with an unauthenticated error and sends nothing
// more. The roles need no second check: a token's roles never change, so a
// token that still authenticates still has the roles that let it in.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, a forgettable.Access, feed sseFeed) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // no proxy buffering
	w.WriteHeader(http.StatusOK)
	s.metrics.subscribers.Inc()
	defer s.metrics.subscribers.Dec()

	write := func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(s.limits.SSEWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if err := write([]byte(": lethe subscription\n\n")); err != nil {
		return
	}
	hash, _ := tokenHashFrom(r.Context())
	authenticated := func() error {
		_, err := s.principal(ctx, hash)
		return err
	}
	send := func(events []forgettable.RecordedEvent) error {
		if len(events) == 0 {
			return nil
		}
		if err := authenticated(); err != nil {
			return err
		}
		if err := s.recordAccess(ctx, r, a, events); err != nil {
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
		s.metrics.read.Add(float64(len(events)))
		return write(buf)
	}
	fail := func(err error) {
		if ctx.Err() != nil {
			return
		}
		var werr interface{ Timeout() bool }
		if errors.As(err, &werr) && werr.Timeout() {
			s.log.Info("subscriber too slow: disconnected", "route", routePattern(r), "request_id", requestID(r))
			return
		}
		// The stream answered 200 already: the problem goes in an error
		// event, mapped as any error answer is.
		p := s.problemOf(r, err)
		switch {
		case errors.Is(err, ErrUnauthenticated):
			tok, _ := principalFrom(r.Context())
			s.log.Info("subscription ended: token revoked", "route", routePattern(r), "request_id", requestID(r), "token_id", tok.TokenID)
			p.Detail = "The token was revoked: the subscription ends."
		case p.Status >= 500:
			p.Detail += " Reconnect with Last-Event-ID."
		}
		b, _ := json.Marshal(p)
		_ = write(fmt.Appendf(nil, "event: error\ndata: %s\n\n", b))
	}

	// Catch-up: stored events, page by page.
	for {
		events, done, err := feed.catchUp(ctx)
		if err == nil {
			err = send(events)
		}
		if err != nil {
			fail(err)
			return
		}
		if done {
			break
		}
		select {
		case <-s.closing:
			_ = write([]byte("event: shutdown\ndata: {}\n\n"))
			return
		default:
		}
	}
	if err := write(fmt.Appendf(nil, "event: caught-up\ndata: {\"position\":%d}\n\n", feed.checkpoint())); err != nil {
		return
	}

	// Live: one goroutine reads ahead at most one batch.
	type batch struct {
		events []eventstore.RecordedEvent
		err    error
	}
	batches := make(chan batch)
	sub := feed.live()
	go func() {
		defer close(batches)
		for {
			e, err := sub.Next(ctx)
			b := batch{err: err}
			if err == nil {
				b.events = append(b.events, e)
				for sub.Buffered() > 0 && len(b.events) < ssePage {
					e, err := sub.Next(ctx)
					if err != nil {
						break
					}
					b.events = append(b.events, e)
				}
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	heartbeat := time.NewTicker(s.limits.SSEHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case b, ok := <-batches:
			if !ok {
				return
			}
			err := b.err
			if err == nil {
				var opened []forgettable.RecordedEvent
				if opened, err = s.opts.Events.Open(ctx, b.events, a); err == nil {
					err = send(opened)
				}
			}
			if err != nil {
				fail(err)
				return
			}
		case <-heartbeat.C:
			if err := authenticated(); err != nil {
				fail(err)
				return
			}
			if err := write([]byte(": heartbeat\n\n")); err != nil {
				return
			}
		case <-s.closing:
			_ = write([]byte("event: shutdown\ndata: {}\n\n"))
			return
		case <-ctx.Done():
			return
		}
	}
}
