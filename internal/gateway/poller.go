// Package gateway is the daemon's core: the one poll loop that reads every
// sensor on its interval, applies calibration, range checks and deadbands,
// renders topics and payloads and puts them in the spool; the publisher that
// takes them from the spool to the broker in order; and the logger of the
// messages that arrive on subscriptions.
package gateway

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// Poller reads the sensors and turns their readings into spool records.
type Poller struct {
	sensors []*sensor
	sink    func(*spool.Record) // where finished records go: the spool
	m       *metrics.Metrics
	log     *slog.Logger
	live    *metrics.Liveness
	seqs    map[string]uint64 // last seq per series at start (durable spool)
	now     func() time.Time
}

// sensor is one configured sensor and its running state. Everything but
// next and index is touched only by the one read in progress (busy).
type sensor struct {
	cfg    config.Sensor // resolved: cfg.Publish is where its readings go
	src    sensors.Source
	series []*sensorSeries // a few at most: a slice is smaller than a map

	stats    *metrics.SensorStats
	failures int          // consecutive failed reads, for the log
	tooMany  bool         // logged that the sensor has too many quantities
	instant  bool         // read inline: sensors.Instant
	scratch  spool.Record // the record being built; reads never overlap

	busy  atomic.Bool
	next  time.Time     // scheduler only
	phase time.Duration // added once after the first read, to spread reads
	index int           // position in the scheduler's heap
}

// spreadGroup is how many sensors the poller reads at the same instant at
// most; more are spread over their interval.
const spreadGroup = 1000

// NewPoller builds every configured source. q receives the records; the
// sequence numbers continue from q.Seqs().
func NewPoller(cfg *config.Config, q spool.Queue, m *metrics.Metrics, log *slog.Logger, live *metrics.Liveness) (*Poller, error) {
	p := &Poller{m: m, log: log, live: live, seqs: q.Seqs(), now: time.Now}
	p.sink = func(r *spool.Record) {
		if d := q.Append(r); d > 0 {
			m.BufferDropped.Add(float64(d))
		}
		m.ReadingsTaken.Inc()
	}
	for i := range cfg.Sensors {
		c := cfg.Sensors[i]
		src, err := c.Source.New(sensors.Env{Name: c.Name})
		if err != nil {
			return nil, fmt.Errorf("sensor %q (type %s): %w", c.Name, c.Type, err)
		}
		s := &sensor{cfg: c, src: src, stats: m.Sensors.Sensor(c.Name)}
		_, s.instant = src.(sensors.Instant)
		s.stats.SetType(c.Type)
		p.sensors = append(p.sensors, s)
	}
	return p, nil
}

// Run reads every sensor at start and then on its interval, until ctx ends.
// A sensor whose previous read is still running skips its turn, so a hung
// source delays nothing but itself.
func (p *Poller) Run(ctx context.Context) error {
	defer p.live.Done("poller")
	var reads sync.WaitGroup
	defer reads.Wait()

	// Every sensor is read at start. After that, sensors on one interval are
	// read together, in groups of up to spreadGroup spread evenly over the
	// interval (at most a second): reading together lets the publisher send
	// in batches (cheap), and 10,000 sensors make ten bursts of 2,000
	// readings a second instead of one of 20,000 (a tenth of the memory).
	groups := (len(p.sensors) + spreadGroup - 1) / spreadGroup
	sched := make(schedule, len(p.sensors))
	now := p.now()
	for i, s := range p.sensors {
		s.next, s.index = now, i
		s.phase = min(s.cfg.Interval.D(), time.Second) * time.Duration(i%groups) / time.Duration(groups)
		sched[i] = s
	}
	heap.Init(&sched)
	timer := time.NewTimer(0)
	defer timer.Stop()
	beat := time.NewTicker(metrics.BeatInterval)
	defer beat.Stop()
	p.live.Beat("poller")
	for {
		now = p.now()
		for len(sched) > 0 && !sched[0].next.After(now) {
			s := sched[0]
			if s.instant {
				p.read(ctx, s)
			} else if s.busy.CompareAndSwap(false, true) {
				reads.Add(1)
				go func() {
					defer reads.Done()
					defer s.busy.Store(false)
					p.read(ctx, s)
				}()
			} else {
				p.log.Debug("previous read still running; skipping this one", "sensor", s.cfg.Name)
			}
			iv := s.cfg.Interval.D() + s.phase
			s.phase = 0
			if s.next = s.next.Add(iv); s.next.Before(now) {
				s.next = now.Add(iv) // fell behind: do not try to catch up
			}
			heap.Fix(&sched, 0)
		}
		if len(sched) > 0 {
			timer.Reset(sched[0].next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-beat.C:
			p.live.Beat("poller")
		}
	}
}

// read reads one sensor once, with its timeout, and takes what it read.
func (p *Poller) read(ctx context.Context, s *sensor) {
	var (
		readings []sensors.Reading
		err      error
		timedOut bool
	)
	if s.instant {
		readings, err = s.src.Read(ctx)
	} else {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.D())
		readings, err = s.src.Read(rctx)
		timedOut = rctx.Err() != nil
		cancel()
	}
	if ctx.Err() != nil {
		return // shutting down: neither a reading nor a failure
	}
	t := p.now()
	if err == nil && len(readings) == 0 {
		err = errors.New("the source returned no readings")
	}
	if err != nil {
		if timedOut {
			err = fmt.Errorf("read timed out after %s: %w", s.cfg.Timeout, err)
		}
		s.stats.Failed()
		s.stats.SetLastError(err)
		s.failures++
		if s.failures == 1 {
			p.log.Warn("sensor read failed", "sensor", s.cfg.Name, "err", err)
		} else {
			p.log.Debug("sensor read failed again", "sensor", s.cfg.Name, "failures", s.failures, "err", err)
		}
		return
	}
	s.stats.Succeeded(t.UnixNano())
	if s.failures > 0 {
		p.log.Info("sensor reads again", "sensor", s.cfg.Name, "failed_reads", s.failures)
		s.failures = 0
	}
	for _, r := range readings {
		p.take(s, r, t)
	}
}

// take turns one reading into a record, unless it is rejected or within
// the deadband.
func (p *Poller) take(s *sensor, r sensors.Reading, t time.Time) {
	if !sensors.ValidQuantity(r.Quantity) {
		s.seriesFor("invalid", p).Rejected.Add(1)
		p.log.Warn("reading with an invalid quantity name rejected", "sensor", s.cfg.Name, "quantity", fmt.Sprintf("%.64q", r.Quantity))
		return
	}
	ser := s.seriesFor(r.Quantity, p)
	if ser == nil {
		s.seriesFor("invalid", p).Rejected.Add(1)
		if !s.tooMany {
			s.tooMany = true
			p.log.Warn("readings rejected: the sensor has too many quantities", "sensor", s.cfg.Name, "quantity", r.Quantity, "max", maxQuantities)
		}
		return
	}
	v := ser.calibrate(r.Value)
	if err := sensors.CheckRange(r.Quantity, v); err != nil {
		ser.Rejected.Add(1)
		if t.Sub(ser.rejectLogged) > time.Minute {
			ser.rejectLogged = t
			p.log.Warn("value rejected", "sensor", s.cfg.Name, "quantity", r.Quantity, "raw", r.Value, "err", err)
		}
		return
	}
	ser.SetValue(v)
	if !ser.due(v, t, s.cfg.Heartbeat.D()) {
		ser.Suppressed.Add(1)
		return
	}
	ser.published, ser.lastValue, ser.lastTime = true, v, t
	ser.seq++
	// The spool copies the record, so the sensor's scratch one serves every
	// reading without an allocation.
	s.scratch = spool.Record{
		Topic:   ser.topic,
		Payload: ser.render(s.cfg.Publish.Format, v, t, ser.seq),
		QoS:     s.cfg.Publish.QoS,
		Retain:  s.cfg.Publish.Retain,
		Time:    t.UnixNano(),
		SeqKey:  ser.seqKey,
		Seq:     ser.seq,
	}
	p.sink(&s.scratch)
}

// maxQuantities bounds the quantities of one sensor: an exec program that
// prints a new name at every read must not grow memory and metrics forever.
const maxQuantities = 16

// seriesFor returns the state of one quantity of s, creating it on first
// use; nil when the sensor already has maxQuantities ("invalid" excepted).
func (s *sensor) seriesFor(q string, p *Poller) *sensorSeries {
	for _, ser := range s.series {
		if ser.quantity() == q {
			return ser
		}
	}
	if len(s.series) >= maxQuantities && q != "invalid" {
		return nil
	}
	name := s.cfg.Name
	ser := &sensorSeries{
		series:      newSeries(renderTopic(s.cfg.Publish.Topic, q), name, q),
		SeriesStats: s.stats.Series(q),
	}
	ser.seq = p.seqs[ser.seqKey]
	if v, ok := s.cfg.Offset[q]; ok {
		ser.offset = v
	}
	if v, ok := s.cfg.Scale[q]; ok {
		ser.scale = v
	}
	if v, ok := s.cfg.Deadband[q]; ok {
		ser.deadband = v
	}
	s.series = append(s.series, ser)
	return ser
}

// sensorSeries is a series with its metrics.
type sensorSeries struct {
	*series
	*metrics.SeriesStats
	rejectLogged time.Time
}

// schedule is a min-heap of sensors by their next read.
type schedule []*sensor

func (h schedule) Len() int           { return len(h) }
func (h schedule) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h schedule) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *schedule) Push(x any) { s := x.(*sensor); s.index = len(*h); *h = append(*h, s) }
func (h *schedule) Pop() any {
	old := *h
	s := old[len(old)-1]
	*h = old[:len(old)-1]
	return s
}
