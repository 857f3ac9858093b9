package gateway

import (
	"context"
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

// ingest is where the readings of every sensor go, pulled or pushed: shared
// by the sensors of one poller.
type ingest struct {
	sink func(*spool.Record) // the spool
	seqs *seqBook
	log  *slog.Logger
}

// sensor is one configured sensor and its state: the one ingest path that
// pulled and pushed readings both go through (calibration, range check,
// push rules, deadband, seq, render, buffer, per-sensor metrics). Its
// ingest state is touched by one goroutine at a time: the read in progress
// (busy) of a pulled sensor, the Run goroutine of a pushed one.
type sensor struct {
	cfg    *config.Sensor // resolved: cfg.Publish is where its readings go
	src    sensors.Source
	push   sensors.Pusher // nil for a sensor read on its interval
	in     *ingest
	stats  *metrics.SensorStats
	series []*sensorSeries // a few at most: a slice is smaller than a map

	failures int          // consecutive failed reads, for the log
	tooMany  bool         // logged that the sensor has too many quantities
	instant  bool         // read inline: sensors.Instant
	scratch  spool.Record // the record being built; reads never overlap

	// Set when the poller starts the sensor. A pulled sensor has no context
	// of its own (at 10,000 sensors they weigh): stopping it cancels the
	// read in flight, if any, and drops what it read.
	ctx        context.Context // push sensors: their Run's
	cancel     context.CancelFunc
	work       sync.WaitGroup // the read in flight, or the push runner
	busy       atomic.Bool
	started    time.Time
	mu         sync.Mutex
	stopped    bool
	cancelRead context.CancelFunc // of the read in flight

	// The scheduler's own.
	next  time.Time
	phase time.Duration // added once after the first read, to spread reads
	index int           // position in the scheduler's heap
	quiet bool          // push: logged as not heard within stale_after
}

// stop stops the sensor: a push sensor's Run, a pulled sensor's read in
// flight (what it read is dropped).
func (s *sensor) stop() {
	s.mu.Lock()
	s.stopped = true
	cancel := s.cancelRead
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
}

// isStopped reports whether stop was called.
func (s *sensor) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// readings takes what one read returned or one transmission brought, at t
// (a reading's own Time, when set, is its moment).
func (s *sensor) readings(rs []sensors.Reading, t time.Time) {
	s.stats.Succeeded(t.UnixNano())
	if s.failures > 0 {
		s.in.log.Info("sensor reads again", "sensor", s.cfg.Name, "failed_reads", s.failures)
		s.failures = 0
	}
	for _, r := range rs {
		s.take(r, t)
	}
}

// failed counts a failed read (or a push source that stopped).
func (s *sensor) failed(err error) {
	s.stats.Failed()
	s.stats.SetLastError(err)
	s.failures++
	if s.failures == 1 {
		s.in.log.Warn("sensor read failed", "sensor", s.cfg.Name, "err", err)
	} else {
		s.in.log.Debug("sensor read failed again", "sensor", s.cfg.Name, "failures", s.failures, "err", err)
	}
}

// take turns one reading into a record, unless it is rejected, a repeat,
// too soon or within the deadband.
func (s *sensor) take(r sensors.Reading, t time.Time) {
	if !r.Time.IsZero() {
		t = r.Time
	}
	if !sensors.ValidQuantity(r.Quantity) {
		s.seriesFor("invalid").Rejected.Add(1)
		s.in.log.Warn("reading with an invalid quantity name rejected", "sensor", s.cfg.Name, "quantity", fmt.Sprintf("%.64q", r.Quantity))
		return
	}
	ser := s.seriesFor(r.Quantity)
	if ser == nil {
		s.seriesFor("invalid").Rejected.Add(1)
		if !s.tooMany {
			s.tooMany = true
			s.in.log.Warn("readings rejected: the sensor has too many quantities", "sensor", s.cfg.Name, "quantity", r.Quantity, "max", maxQuantities)
		}
		return
	}
	v := ser.calibrate(r.Value)
	if err := sensors.CheckRange(r.Quantity, v); err != nil {
		ser.Rejected.Add(1)
		if t.Sub(ser.rejectLogged) > time.Minute {
			ser.rejectLogged = t
			s.in.log.Warn("value rejected", "sensor", s.cfg.Name, "quantity", r.Quantity, "raw", r.Value, "err", err)
		}
		return
	}
	ser.SetValue(v)
	if s.push != nil && !ser.pushDue(v, t, s.cfg.Interval.D()) || !ser.due(v, t, s.cfg.Heartbeat.D()) {
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
	s.in.sink(&s.scratch)
}

// maxQuantities bounds the quantities of one sensor: an exec program that
// prints a new name at every read must not grow memory and metrics forever.
const maxQuantities = 16

// seriesFor returns the state of one quantity of s, creating it on first
// use, its seq continuing from the book; nil when the sensor already has
// maxQuantities ("invalid" excepted).
func (s *sensor) seriesFor(q string) *sensorSeries {
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
	ser.seq = s.in.seqs.get(ser.seqKey)
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

// saveSeqs hands the sensor's seqs back to the book when it stops, so that
// the sensor that takes its name continues them.
func (s *sensor) saveSeqs() {
	for _, ser := range s.series {
		s.in.seqs.put(ser.seqKey, ser.seq)
	}
}

// sensorSeries is a series with its metrics.
type sensorSeries struct {
	*series
	*metrics.SeriesStats
	rejectLogged time.Time

	// Push sensors: the first reading of the last transmission heard.
	heard      time.Time
	heardValue float64
}

// repeatWindow: a radio sensor sends each transmission a few times in a
// row; what repeats a value within this is the same reading.
const repeatWindow = 2 * time.Second

// pushDue reports whether a pushed value may be published: not a repeat of
// the transmission just heard, and at least interval after the last one
// published.
func (ser *sensorSeries) pushDue(v float64, t time.Time, interval time.Duration) bool {
	if since := t.Sub(ser.heard); v == ser.heardValue && !ser.heard.IsZero() && since >= 0 && since < repeatWindow {
		return false
	}
	ser.heard, ser.heardValue = t, v
	return !ser.published || t.Sub(ser.lastTime) >= interval
}

// seqBook holds the last seq of every series that is not in a running
// sensor: those of the spool at start, and those of sensors stopped by a
// reload, so that a sensor changed, or removed and added back, continues
// its numbering.
type seqBook struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (b *seqBook) get(key string) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[key]
}

func (b *seqBook) put(key string, seq uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq > b.m[key] {
		b.m[key] = seq
	}
}
