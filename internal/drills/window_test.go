package drills

// The drills' report: what its "refused" columns measure (found by
// review: the first version spanned isolated failures and reached back
// before the fault).

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func at(base time.Time, d time.Duration) time.Time { return base.Add(d) }

// Two isolated failures 30 s apart, with a success every 200 ms between
// them, are two short refusals, not 30 s of them.
func TestWindowIsTheLongestStretchWithoutSuccess(t *testing.T) {
	from := time.Now()
	l := &load{}
	l.outcomes = append(l.outcomes, outcome{at: at(from, 100*time.Millisecond), took: 100 * time.Millisecond, kind: "append", status: 503, typ: "https://lethe.dev/problems/database-unavailable"})
	for d := 200 * time.Millisecond; d < 30*time.Second; d += 200 * time.Millisecond {
		l.outcomes = append(l.outcomes, outcome{at: at(from, d), took: 5 * time.Millisecond, kind: "append", status: 200})
	}
	l.outcomes = append(l.outcomes, outcome{at: at(from, 30*time.Second), took: 100 * time.Millisecond, kind: "append", status: 0})

	w, slowest, failed := l.window("append", from)
	if w != 200*time.Millisecond {
		t.Errorf("window %v; want 200ms (from the last success to the failure after it)", w)
	}
	if slowest != 5*time.Millisecond || failed["503 database-unavailable"] != 1 || failed["no answer"] != 1 {
		t.Errorf("slowest %v, failed %v", slowest, failed)
	}
}

// A request that started before the fault and failed just after it (an
// append's 15 s client timeout, say) counts from the fault, not before.
func TestWindowStartsAtTheFault(t *testing.T) {
	from := time.Now()
	l := &load{outcomes: []outcome{
		{at: at(from, -20*time.Second), took: time.Second, kind: "append", status: 503}, // before: ignored
		{at: at(from, time.Second), took: 15 * time.Second, kind: "append", status: 0},  // started 14 s before the fault
	}}
	w, _, _ := l.window("append", from)
	if w != time.Second {
		t.Errorf("window %v; want 1s (from the fault to the failure's end)", w)
	}
}

// The subscriber's bookkeeping is safe to read while it is written (run
// with -race): ids and positions are appended and read under s.mu.
func TestSubscriberBookkeepingIsSafeUnderRace(t *testing.T) {
	s := &subscriber{}
	acks := []ack{{id: "e0"}, {id: "e499"}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 500 {
			s.mu.Lock()
			s.ids = append(s.ids, fmt.Sprintf("e%d", i))
			s.positions = append(s.positions, int64(i))
			s.mu.Unlock()
		}
	}()
	for range 50 {
		_ = s.caughtUp(acks)
		_, _ = s.seen()
	}
	wg.Wait()
	if !s.caughtUp(acks) {
		t.Error("not caught up after every event")
	}
}
