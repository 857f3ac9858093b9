package session

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The delays of the reconnect loop, drawn many times: within their bounds,
// and spread over them.
func TestBackoffBounds(t *testing.T) {
	const draws = 20000
	for _, c := range []struct {
		name     string
		f        func() time.Duration
		lo, hi   time.Duration
		buckets  int // of 100 ms over [lo, hi], each to get a fair share
		maxShare float64
	}{
		{"first retry", func() time.Duration { return backoff(0, 30*time.Second) }, 50 * time.Millisecond, 100 * time.Millisecond, 0, 0},
		{"third retry", func() time.Duration { return backoff(2, 30*time.Second) }, 200 * time.Millisecond, 400 * time.Millisecond, 0, 0},
		{"at the cap", func() time.Duration { return backoff(10, time.Second) }, 500 * time.Millisecond, time.Second, 0, 0},
		{"after a lost connection, one URL", func() time.Duration { return firstRetry(1, 30*time.Second) }, 0, restartSpread, 10, 0.12},
		{"after a lost connection, one URL, reconnect_max_interval 300ms", func() time.Duration { return firstRetry(1, 300*time.Millisecond) }, 0, 300 * time.Millisecond, 3, 0.36},
		{"after a lost connection, three URLs: failover", func() time.Duration { return firstRetry(3, 30*time.Second) }, 0, failoverSpread, 0, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			var counts [64]int
			for range draws {
				d := c.f()
				if d < c.lo || d > c.hi {
					t.Fatalf("%s outside [%s, %s]", d, c.lo, c.hi)
				}
				counts[min(int(d/(100*time.Millisecond)), len(counts)-1)]++
			}
			for i := range c.buckets {
				if share := float64(counts[i]) / draws; share > c.maxShare {
					t.Errorf("bucket %d00ms: %.1f%% of the retries", i, share*100)
				}
			}
		})
	}
}

// The ladder after a failed spread retry: the spread, doubling to the cap,
// within 2.5 %.
func TestLadderStep(t *testing.T) {
	step := restartSpread
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second} {
		var d time.Duration
		d, step = ladderStep(step, 5*time.Second)
		if d < want-want/40 || d > want+want/40 {
			t.Fatalf("step %d: %s, want %s ± 2.5%%", i, d, want)
		}
	}
}

// A fleet whose one broker restarts: every gateway lost its connection at
// once, draws its first retry from the spread, and follows the ladder while
// the broker is away. Whatever the outage, the fleet arrives at the
// returned broker spread over a second: in the median of many simulated
// restarts, no 100 ms holds more than 15 % of 200 gateways (fresh jitter
// at every retry made the ones that came early arrive together: 17-20 %).
func TestFleetArrivalsSpread(t *testing.T) {
	const gateways, trials = 200, 60
	maxDelay := time.Second
	for _, outage := range []time.Duration{200 * time.Millisecond, 550 * time.Millisecond, 3 * time.Second} {
		var peaks []float64
		for range trials {
			var buckets [64]int
			for range gateways {
				at := firstRetry(1, maxDelay)
				step := min(restartSpread, maxDelay)
				for at < outage {
					var d time.Duration
					d, step = ladderStep(step, maxDelay)
					at += d + time.Duration(rand.N(3))*time.Millisecond // a refused connect
				}
				buckets[min(int((at-outage)/(100*time.Millisecond)), len(buckets)-1)]++
			}
			peaks = append(peaks, float64(slices.Max(buckets[:]))/gateways*100)
		}
		slices.Sort(peaks)
		if med := peaks[len(peaks)/2]; med > 15 {
			t.Errorf("outage %s: the busiest 100 ms held %.1f%% of the fleet (median of %d)", outage, med, trials)
		}
	}
}
