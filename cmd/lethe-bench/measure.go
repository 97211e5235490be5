package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// bench is what the suites share.
type bench struct {
	pool *pgxpool.Pool
	opts options
	out  io.Writer
}

// suite is a group of figures, run in order.
type suite struct {
	name string
	run  func(ctx context.Context, b *bench) ([]figure, error)
}

func suites() []suite {
	return []suite{
		{"eventstore/append", benchAppend},
		{"eventstore/read", benchRead},
		{"forgettable", benchForgettable},
		{"api/append", benchAPI},
		{"projection", benchProjection},
		{"audit", benchAudit},
	}
}

// op is one operation of a throughput measurement: worker w's i-th (i counts
// on across rounds). It returns how many units (events) it handled.
type op func(ctx context.Context, w, i int) (int, error)

// rate is a throughput measurement.
type rate struct {
	units     int64
	elapsed   time.Duration
	latencies []time.Duration // one per operation
}

func (r rate) perSecond() float64 { return float64(r.units) / r.elapsed.Seconds() }

func (r *rate) add(o rate) {
	r.units += o.units
	r.elapsed += o.elapsed
	r.latencies = append(r.latencies, o.latencies...)
}

func (r rate) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// throughput runs f from len(next) workers for d. Worker w's operations are
// numbered from next[w], which is advanced past the ones done.
func throughput(ctx context.Context, next []int, d time.Duration, f op) (rate, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		total    rate
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range next {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var units int64
			var lat []time.Duration
			i := next[w]
			for ; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				n, err := f(ctx, w, i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("worker %d op %d: %w", w, i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				lat = append(lat, time.Since(t0))
				units += int64(n)
			}
			mu.Lock()
			next[w] = i
			total.units += units
			total.latencies = append(total.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.elapsed = time.Since(start)
	return total, firstErr
}

// rounds is how many alternating rounds a paired measurement takes: this
// machine's speed drifts (neighbours, checkpoints), and alternating the
// baseline and Lethe exposes both to the same drift.
const rounds = 3

// paired measures baseline and lethe with the same number of workers in
// alternating rounds, d in all for each side.
func paired(ctx context.Context, workers int, d time.Duration, baseline, lethe op) (base, got rate, err error) {
	nextBase, nextLethe := make([]int, workers), make([]int, workers)
	for range rounds {
		r, err := throughput(ctx, nextBase, d/rounds, baseline)
		if err != nil {
			return base, got, fmt.Errorf("baseline: %w", err)
		}
		base.add(r)
		if r, err = throughput(ctx, nextLethe, d/rounds, lethe); err != nil {
			return base, got, err
		}
		got.add(r)
	}
	return base, got, nil
}

// timed runs f once and returns its rate for the given units.
func timed(units int, f func() error) (rate, error) {
	start := time.Now()
	err := f()
	return rate{units: int64(units), elapsed: time.Since(start)}, err
}

func compare(name, unit string, value rate, baselineName string, baseline rate, target float64) figure {
	return figure{Name: name, Value: value.perSecond(), Unit: unit, BaselineName: baselineName,
		Baseline: baseline.perSecond(), Ratio: value.perSecond() / baseline.perSecond(), Target: target}
}
