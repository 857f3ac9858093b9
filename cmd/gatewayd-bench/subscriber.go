package main

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// hub is the subscriber's bookkeeping: one tally per run (the second level
// of bench/RUN/SENSOR/QUANTITY). It is fed from paho's goroutine.
type hub struct {
	sub *BaselineSubscriber

	mu   sync.Mutex
	runs map[string]*tally
}

// tally counts one run's deliveries and, while recording, their latency:
// the delivery time minus the payload's "time" (the moment of the reading,
// with millisecond resolution).
type tally struct {
	n         uint64
	first     time.Time
	recording bool
	lat       []int32 // microseconds
	lastSeq   map[string]uint64
	gaps      uint64 // a seq skipped on a topic
	dups      uint64 // a seq at or below one already seen
	badTime   uint64
}

const maxSamples = 4 << 20

func newHub(url string) (*hub, error) {
	h := &hub{runs: map[string]*tally{}}
	var err error
	h.sub, err = NewBaselineSubscriber(BaselineOptions{URL: url, ClientID: "bench-subscriber", CleanSession: true},
		"bench/#", 1, h.onMessage)
	return h, err
}

func (h *hub) close() {
	if h.sub != nil {
		h.sub.Close()
	}
}

// track starts counting run (from zero).
func (h *hub) track(run string) {
	h.mu.Lock()
	h.runs[run] = &tally{lastSeq: map[string]uint64{}}
	h.mu.Unlock()
}

func (h *hub) onMessage(topic string, payload []byte, at time.Time) {
	rest, ok := strings.CutPrefix(topic, "bench/")
	if !ok {
		return
	}
	run, _, _ := strings.Cut(rest, "/")
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.runs[run]
	if t == nil {
		return
	}
	t.n++
	if t.n == 1 {
		t.first = at
	}
	if seq, ok := field(payload, `"seq":`); ok {
		if n, err := strconv.ParseUint(string(seq), 10, 64); err == nil {
			last, seen := t.lastSeq[topic]
			switch {
			case !seen:
			case n <= last:
				t.dups++
			case n > last+1:
				t.gaps++
			}
			if n > last {
				t.lastSeq[topic] = n
			}
		}
	}
	if !t.recording || len(t.lat) >= maxSamples {
		return
	}
	ts, ok := field(payload, `"time":"`)
	if !ok {
		t.badTime++
		return
	}
	rt, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		t.badTime++
		return
	}
	t.lat = append(t.lat, int32(min(at.Sub(rt).Microseconds(), 1<<31-1)))
}

// field returns the bytes after key up to the next '"', ',' or '}'.
func field(p []byte, key string) ([]byte, bool) {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil, false
	}
	v := p[i+len(key):]
	end := bytes.IndexAny(v, `",}`)
	if end < 0 {
		return nil, false
	}
	return v[:end], true
}

// snapshot is a run's tally at one moment.
type snapshot struct {
	n, gaps, dups uint64
	first         time.Time
	at            time.Time // when n was counted
}

func (h *hub) snapshot(run string) snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.runs[run]
	if t == nil {
		return snapshot{at: time.Now()}
	}
	return snapshot{n: t.n, gaps: t.gaps, dups: t.dups, first: t.first, at: time.Now()}
}

func (h *hub) record(run string, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.runs[run]; t != nil {
		t.recording = on
	}
}

// latency returns the p50 and p99 of the recorded samples.
func (h *hub) latency(run string) (p50, p99 time.Duration, n int) {
	h.mu.Lock()
	var lat []int32
	if t := h.runs[run]; t != nil {
		lat = slices.Clone(t.lat)
	}
	h.mu.Unlock()
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration {
		return time.Duration(lat[min(len(lat)-1, int(p*float64(len(lat))))]) * time.Microsecond
	}
	return q(0.50), q(0.99), len(lat)
}

// forget drops a run's tally.
func (h *hub) forget(run string) {
	h.mu.Lock()
	delete(h.runs, run)
	h.mu.Unlock()
}

// waitFirst waits until run has delivered n messages.
func (h *hub) waitFirst(run string, n uint64, timeout time.Duration, alive func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if h.snapshot(run).n >= n {
			return true
		}
		if alive != nil && !alive() {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return false
}
