package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// broadcaster wakes every waiter at once by closing a channel.
type broadcaster struct {
	mu sync.Mutex
	ch chan struct{}
}

func newBroadcaster() *broadcaster { return &broadcaster{ch: make(chan struct{})} }

// Changes implements eventstore.ChangeNotifier.
func (b *broadcaster) Changes() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ch
}

func (b *broadcaster) broadcast() {
	b.mu.Lock()
	close(b.ch)
	b.ch = make(chan struct{})
	b.mu.Unlock()
}

// announceAppend is called after an append committed: it wakes this
// process's subscriptions at once and asks the announcer to tell the other
// processes.
func (s *Store) announceAppend() {
	s.changes.broadcast()
	select {
	case s.pending <- struct{}{}:
	default: // a NOTIFY is already due: it will cover this append too
	}
}

// notifySQL sends the notification in a transaction that commits without
// waiting for its WAL record to reach disk: it carries nothing durable (the
// events' own commit was durable), and a synchronous commit would cost every
// append a second fsync. Listeners get the notification at commit either way.
const notifySQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')`

// announce sends one NOTIFY for any number of appends that committed while
// the previous NOTIFY was on its way. NOTIFY runs in its own transaction,
// after the appends committed: inside the append transaction it would take
// PostgreSQL's global notify lock and serialise every commit.
func (s *Store) announce() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.pending:
		}
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		_, err := s.pool.Exec(ctx, notifySQL, NotifyChannel)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("notify subscribers of new events", "err", err)
		}
		// Under load, appends that commit during the gap share the next
		// NOTIFY: at most one per notifyMinGap, which bounds both the
		// notification traffic and the subscribers' wake-ups.
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(notifyMinGap):
		}
	}
}

// notifyMinGap is the least time between two NOTIFYs of one store: it adds
// at most this much to the delivery of events to other processes.
const notifyMinGap = time.Millisecond

// startListening starts, once, the goroutine that LISTENs for other
// processes' appends on a dedicated connection.
func (s *Store) startListening() {
	s.listenOnce.Do(func() {
		s.wg.Add(1)
		go s.listen()
	})
}

func (s *Store) listen() {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for s.ctx.Err() == nil {
		err := s.holdListenConn()
		if s.ctx.Err() != nil {
			return
		}
		s.log.Warn("listen for new events: reconnecting", "err", err, "in", backoff)
		s.changes.broadcast() // notifications may have been missed: re-read
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// holdListenConn holds one LISTEN connection until it fails.
func (s *Store) holdListenConn() error {
	conn, err := pgx.ConnectConfig(s.ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = conn.Close(ctx)
	}()
	if _, err := conn.Exec(s.ctx, `LISTEN `+NotifyChannel); err != nil {
		return err
	}
	s.changes.broadcast() // anything committed before LISTEN took effect
	for {
		if _, err := conn.WaitForNotification(s.ctx); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		s.changes.broadcast()
	}
}
