// Package drills runs Lethe's fault drills (make drills): a steady load
// through HAProxy on the highly available topology (package
// internal/devenv/cluster) while faults are injected one at a time, and
// the checks that nothing acknowledged was lost, duplicated or skipped.
package drills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// outcome is one request of the load: when it ended, and how.
type outcome struct {
	client int // which writer, reader or eraser
	at     time.Time
	took   time.Duration
	kind   string // "append", "read", "erase"
	status int    // 0: no answer (connection failed, timeout)
	typ    string // the problem type, if any
}

// ack is an acknowledged append of one event.
type ack struct {
	id      string
	stream  string
	version int64
}

// erasure is a subject erased (or being erased) under load.
type erasure struct {
	subject string
	ref     string
	status  string // of the last answer: "completed", "pending", "" (no answer)
	gone    bool   // keyVerifiedGone
}

// load is the steady load of the drills: writers appending with expected
// versions and personal data, subscribers following $all, an eraser.
type load struct {
	url       string
	writer    *client.Client // writer + pii-reader
	piiSecret string         // its token
	reader    *client.Client
	admin     *client.Client
	http      *http.Client
	streamLen int // events per stream before a writer moves on

	mu       sync.Mutex
	outcomes []outcome
	acks     []ack
	done     []string // subjects whose streams are complete: erasable
	erasures []*erasure
	subs     []*subscriber
}

// Clients of the load, for outcome.client: writers are 0 to 3.
const (
	readerClient = 100
	eraserClient = 200
)

func (l *load) record(client int, kind string, start time.Time, err error) {
	o := outcome{client: client, at: time.Now(), took: time.Since(start), kind: kind}
	var p *wire.Problem
	switch {
	case err == nil:
		o.status = 200
	case errors.As(err, &p):
		o.status, o.typ = p.Status, p.Type
	}
	l.mu.Lock()
	l.outcomes = append(l.outcomes, o)
	l.mu.Unlock()
}

// write appends to streams drill-<w>-<n>, streamLen events each, every
// event with the stream's subject's name sealed. A failed append is
// retried with the same event and expected version until it succeeds: the
// event id makes the retry safe, whatever happened to the first try.
func (l *load) write(ctx context.Context, w int) error {
	for n := 0; ctx.Err() == nil; n++ {
		stream := fmt.Sprintf("drill-%d-%d", w, n)
		subject := fmt.Sprintf("person-%d-%d@example.com", w, n)
		for v := int64(0); v < int64(l.streamLen) && ctx.Err() == nil; v++ {
			ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "person-noted",
				Data:         json.RawMessage(fmt.Sprintf(`{"name":"Person %d-%d","n":%d}`, w, n, v)),
				PersonalData: []wire.PersonalData{{Subject: subject, Paths: []string{"/name"}}}}
			for {
				actx, cancel := context.WithTimeout(ctx, 15*time.Second)
				start := time.Now()
				_, err := l.writer.Append(actx, stream, wire.Exact(v-1), ev)
				cancel()
				if ctx.Err() != nil {
					return nil
				}
				l.record(w, "append", start, err)
				var conflict *client.Conflict
				if errors.As(err, &conflict) {
					// A conflict can only be our own earlier try that
					// committed after its answer was lost... but an
					// identical retry answers 200, so this is a bug.
					return fmt.Errorf("append %s to %s at %d: a conflict: %v", ev.ID, stream, v, err)
				}
				if err == nil {
					l.mu.Lock()
					l.acks = append(l.acks, ack{id: ev.ID, stream: stream, version: v})
					l.mu.Unlock()
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		l.mu.Lock()
		l.done = append(l.done, subject)
		l.mu.Unlock()
	}
	return nil
}

// read reads a stream now and then, to measure reads' windows.
func (l *load) read(ctx context.Context) {
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		start := time.Now()
		_, err := l.reader.ReadAll(rctx, client.LogOptions{Limit: 10})
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.record(readerClient, "read", start, err)
		time.Sleep(250 * time.Millisecond)
	}
}

// erase erases a finished subject every few seconds, and finishes pending
// erasures by erasing again.
func (l *load) erase(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		var todo []*erasure
		for _, e := range l.erasures {
			if e.status != "completed" {
				todo = append(todo, e)
			}
		}
		if len(l.done) > 0 {
			s := l.done[0]
			l.done = l.done[1:]
			e := &erasure{subject: s}
			l.erasures = append(l.erasures, e)
			todo = append(todo, e)
		}
		l.mu.Unlock()
		for _, e := range todo {
			l.eraseOnce(ctx, e)
		}
	}
}

func (l *load) eraseOnce(ctx context.Context, e *erasure) {
	ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	r, err := l.admin.Erase(ectx, e.subject, wire.EraseRequest{Reason: "drill"})
	if ctx.Err() != nil {
		return
	}
	l.record(eraserClient, "erase", start, err)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		return
	}
	e.status, e.ref = r.Status, r.SubjectRef
	e.gone = r.Completion != nil && r.Completion.KeyVerifiedGone
}

// subscriber follows $all through HAProxy, reconnecting after any error
// with Last-Event-ID (to whichever server HAProxy picks).
type subscriber struct {
	mu        sync.Mutex
	ids       []string
	positions []int64
	reconnect int
}

func (l *load) subscribe(ctx context.Context, s *subscriber) {
	last := ""
	for ctx.Err() == nil {
		sub, err := l.reader.SubscribeAll(ctx, 0, last, nil, []string{"drill"})
		if err != nil {
			time.Sleep(300 * time.Millisecond)
			continue
		}
		for {
			ev, err := sub.Next()
			if err != nil {
				break
			}
			if ev.Kind != "" {
				continue
			}
			s.mu.Lock()
			s.ids = append(s.ids, ev.Event.ID)
			s.positions = append(s.positions, ev.Event.Position)
			s.mu.Unlock()
			last = strconv.FormatInt(ev.Event.Position, 10)
		}
		sub.Close()
		s.mu.Lock()
		s.reconnect++
		s.mu.Unlock()
	}
}

// seen returns what the subscriber received.
func (s *subscriber) seen() (ids []string, positions []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids), slices.Clone(s.positions)
}

// window measures, for the outcomes of kind that ended after from: the
// longest time one client went without a successful request while it had
// failed ones (from its last success, or from, to its next success, or to
// its last failure), the slowest request that succeeded, and the failed
// requests by status and problem type.
func (l *load) window(kind string, from time.Time) (window, slowest time.Duration, failed map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	failed = map[string]int{}
	type run struct {
		lastOK, lastFail time.Time
		failing          bool
	}
	runs := map[int]*run{}
	for _, o := range l.outcomes { // in order of their ends, per client
		if o.kind != kind || o.at.Before(from) {
			continue
		}
		r := runs[o.client]
		if r == nil {
			r = &run{lastOK: from}
			runs[o.client] = r
		}
		if o.status == 200 {
			slowest = max(slowest, o.took)
			if r.failing {
				window = max(window, o.at.Sub(r.lastOK))
			}
			r.lastOK, r.failing = o.at, false
			continue
		}
		r.failing, r.lastFail = true, o.at
		key := "no answer"
		switch {
		case o.status != 0 && o.typ != "":
			key = strconv.Itoa(o.status) + " " + strings.TrimPrefix(o.typ, "https://lethe.dev/problems/")
		case o.status != 0:
			key = strconv.Itoa(o.status) + " (no problem document)"
		}
		failed[key]++
	}
	for _, r := range runs {
		if r.failing {
			window = max(window, r.lastFail.Sub(r.lastOK))
		}
	}
	return window, slowest, failed
}

// caughtUp reports whether the subscriber has seen every event of acks.
func (s *subscriber) caughtUp(acks []ack) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(s.ids))
	for _, id := range s.ids {
		seen[id] = true
	}
	for _, a := range acks {
		if !seen[a.id] {
			return false
		}
	}
	return true
}
