package drills

// Review of issue 13 (branch review-13): characterisation tests of the
// drills' pure logic. They pass on the code as it is and pin down what
// the report's "refused" columns mean today; when window() is changed to
// measure the longest stretch without a successful request, flip the
// expectations marked "today".

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func at(base time.Time, d time.Duration) time.Time { return base.Add(d) }

// Two isolated failures 30 s apart, with a success every 200 ms between
// them, are reported as 30 s of refused appends: window() spans from the
// first failure's start to the last one's end, whatever succeeded between.
func TestReviewWindowSpansIsolatedFailures(t *testing.T) {
	from := time.Now()
	l := &load{}
	l.outcomes = append(l.outcomes, outcome{at: at(from, 100*time.Millisecond), took: 100 * time.Millisecond, kind: "append", status: 503, typ: "https://lethe.dev/problems/database-unavailable"})
	for d := 200 * time.Millisecond; d < 30*time.Second; d += 200 * time.Millisecond {
		l.outcomes = append(l.outcomes, outcome{at: at(from, d), took: 5 * time.Millisecond, kind: "append", status: 200})
	}
	l.outcomes = append(l.outcomes, outcome{at: at(from, 30*time.Second), took: 100 * time.Millisecond, kind: "append", status: 0})

	w, slowest, failed := l.window("append", from)
	if w < 29*time.Second { // today: ~30 s, though appends were never refused for more than ~100 ms
		t.Errorf("window %v: window() no longer spans isolated failures; update this test", w)
	}
	if slowest != 5*time.Millisecond || failed["503 database-unavailable"] != 1 || failed["no answer"] != 1 {
		t.Errorf("slowest %v, failed %v", slowest, failed)
	}
}

// A request that started before the fault and failed just after it (an
// append's 15 s client timeout, say) stretches the window back before the
// fault was injected: only the end time is compared with from.
func TestReviewWindowReachesBeforeTheFault(t *testing.T) {
	from := time.Now()
	l := &load{outcomes: []outcome{
		{at: at(from, -20*time.Second), took: time.Second, kind: "append", status: 503}, // before: ignored
		{at: at(from, time.Second), took: 15 * time.Second, kind: "append", status: 0},  // started 14 s before the fault
	}}
	w, _, _ := l.window("append", from)
	if w != 15*time.Second { // today: 15 s, 14 of them before the fault
		t.Errorf("window %v; want 15s today", w)
	}
}

// The subscriber's bookkeeping is safe to read while it is written (run
// with -race): ids and positions are appended and read under s.mu.
func TestReviewSubscriberBookkeepingUnderRace(t *testing.T) {
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
