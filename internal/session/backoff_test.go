package session

import (
	"testing"
	"time"
)

// The delays of the reconnect loop, drawn many times: within their bounds,
// and spread over them (a fleet's reconnects after a broker restart land in
// 100 ms buckets of at most about a tenth of the fleet each).
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
		{"at the cap: full jitter", func() time.Duration { return backoff(10, time.Second) }, 0, time.Second, 10, 0.12},
		{"after a lost connection, one URL", func() time.Duration { return firstRetry(1, 30*time.Second) }, 0, restartSpread, 10, 0.12},
		{"after a lost connection, one URL, reconnect_max_interval 300ms", func() time.Duration { return firstRetry(1, 300*time.Millisecond) }, 0, 300 * time.Millisecond, 3, 0.36},
		{"after a lost connection, three URLs: failover", func() time.Duration { return firstRetry(3, 30*time.Second) }, 0, failoverSpread, 0, 0},
		{"after a failed spread retry", func() time.Duration { return backoff(restartSteps, 30*time.Second) }, restartSpread * 8 / 10, restartSpread * 16 / 10, 0, 0},
		{"after a failed spread retry, reconnect_max_interval 1s", func() time.Duration { return backoff(restartSteps, time.Second) }, 0, time.Second, 10, 0.12},
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
