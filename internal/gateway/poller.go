// Package gateway is the daemon's core: the poller that runs every sensor
// (reading the pulled ones on their interval, running the pushed ones) and
// takes their readings through one ingest path (calibration, range checks,
// deadbands, seq, rendering) into the spool; the publisher that takes them
// from the spool to the broker in order; and the logger of the messages that
// arrive on subscriptions.
package gateway

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// Poller runs the configured sensors and turns their readings into spool
// records. Apply changes the sensors while it runs (a reload).
type Poller struct {
	in        *ingest
	m         *metrics.Metrics
	log       *slog.Logger
	live      *metrics.Liveness
	receivers *sensors.Receivers
	now       func() time.Time

	mu      sync.Mutex
	sensors []*sensor // the configured sensors, in the config's order

	changes chan func(*scheduler) // run by Run's loop
	done    chan struct{}         // closed when Run returns
}

// spreadGroup is how many sensors the poller reads at the same instant at
// most; more are spread over their interval.
const spreadGroup = 1000

// NewPoller builds every configured source. q receives the records; the
// sequence numbers continue from q.Seqs().
func NewPoller(cfg *config.Config, q spool.Queue, m *metrics.Metrics, log *slog.Logger, live *metrics.Liveness) (*Poller, error) {
	p := &Poller{
		m: m, log: log, live: live, now: time.Now,
		receivers: sensors.NewReceivers(log),
		changes:   make(chan func(*scheduler)),
		done:      make(chan struct{}),
	}
	p.in = &ingest{
		sink: func(r *spool.Record) {
			if d := q.Append(r); d > 0 {
				m.BufferDropped.Add(float64(d))
			}
			m.ReadingsTaken.Inc()
		},
		seqs: &seqBook{m: q.Seqs()},
		log:  log,
	}
	for i := range cfg.Sensors {
		s, err := p.build(&cfg.Sensors[i])
		if err != nil {
			return nil, err
		}
		p.sensors = append(p.sensors, s)
	}
	return p, nil
}

// build builds one sensor's source; it starts nothing. c stays the
// sensor's config (the config is not changed once parsed).
func (p *Poller) build(c *config.Sensor) (*sensor, error) {
	var s *sensor
	// A transmission a push source rejects counts as a failed read; it is
	// called from the source's Run, which starts after s is set.
	rejected := func(err error) { s.failed(err) }
	src, err := c.Source.New(sensors.Env{Name: c.Name, Log: p.log.With("sensor", c.Name), Receivers: p.receivers, Rejected: rejected})
	if err != nil {
		return nil, fmt.Errorf("sensor %q (type %s): %w", c.Name, c.Type, err)
	}
	s = &sensor{cfg: c, src: src, in: p.in, stats: p.m.Sensors.Sensor(c.Name)}
	s.stats.SetType(c.Type)
	s.push, _ = src.(sensors.Pusher)
	if c.Push() != (s.push != nil) {
		return nil, fmt.Errorf("sensor %q: type %s: its config and its source disagree on whether it pushes", c.Name, c.Type)
	}
	_, s.instant = src.(sensors.Instant)
	return s, nil
}

// Run runs every sensor until ctx ends: it reads the pulled ones at start
// and then on their interval, and runs the pushed ones. A sensor whose
// previous read is still running skips its turn, so a hung source delays
// nothing but itself.
func (p *Poller) Run(ctx context.Context) error {
	defer close(p.done)
	defer p.live.Done("poller")
	defer p.receivers.Close()
	sc := &scheduler{p: p, ctx: ctx, push: map[*sensor]bool{}}
	defer sc.stopAll()

	// Every sensor is read at start. After that, sensors on one interval are
	// read together, in groups of up to spreadGroup spread evenly over the
	// interval (at most a second): reading together lets the publisher send
	// in batches (cheap), and 10,000 sensors make ten bursts of 2,000
	// readings a second instead of one of 20,000 (a tenth of the memory).
	p.mu.Lock()
	all := p.sensors
	p.mu.Unlock()
	pulled := 0
	for _, s := range all {
		if s.push == nil {
			pulled++
		}
	}
	groups := max(1, (pulled+spreadGroup-1)/spreadGroup)
	i := 0
	for _, s := range all {
		sc.start(s)
		if s.push == nil {
			s.phase = min(s.cfg.Interval.D(), time.Second) * time.Duration(i%groups) / time.Duration(groups)
			i++
		}
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	beat := time.NewTicker(metrics.BeatInterval)
	defer beat.Stop()
	p.live.Beat("poller")
	for {
		now := p.now()
		sched := &sc.heap
		for len(*sched) > 0 && !(*sched)[0].next.After(now) {
			s := (*sched)[0]
			if s.instant {
				p.read(ctx, s)
			} else if s.busy.CompareAndSwap(false, true) {
				s.work.Add(1)
				go func() {
					defer s.work.Done()
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
			heap.Fix(sched, 0)
		}
		if len(*sched) > 0 {
			timer.Reset((*sched)[0].next.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case change := <-p.changes:
			change(sc)
		case <-beat.C:
			p.live.Beat("poller")
			sc.checkHeard(p.now())
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
		readings, err = s.src.Read(ctx) // never blocks: stop cannot come meanwhile
	} else {
		rctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout.D())
		s.mu.Lock()
		s.cancelRead = cancel
		if s.stopped {
			cancel()
		}
		s.mu.Unlock()
		readings, err = s.src.Read(rctx)
		timedOut = rctx.Err() != nil
		s.mu.Lock()
		s.cancelRead = nil
		s.mu.Unlock()
		cancel()
		if s.isStopped() {
			return // removed by a reload meanwhile
		}
	}
	if ctx.Err() != nil {
		return // stopping: neither a reading nor a failure
	}
	t := p.now()
	if err == nil && len(readings) == 0 {
		err = errors.New("the source returned no readings")
	}
	if err != nil {
		if timedOut {
			err = fmt.Errorf("read timed out after %s: %w", s.cfg.Timeout, err)
		}
		s.failed(err)
		return
	}
	s.readings(readings, t)
}

// runPush runs a push sensor's source until the sensor stops, again after
// a backoff when it returns early.
func (p *Poller) runPush(s *sensor) {
	defer s.work.Done()
	const first, most = time.Second, time.Minute
	delay := first
	emit := func(rs []sensors.Reading) {
		if len(rs) > 0 && s.ctx.Err() == nil {
			s.readings(rs, p.now())
		}
	}
	for {
		started := time.Now()
		err := s.push.Run(s.ctx, emit)
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("the source stopped")
		}
		if time.Since(started) >= most {
			delay = first
		}
		s.failed(fmt.Errorf("%w (starting it again in %s)", err, delay))
		t := time.NewTimer(delay)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, most)
	}
}

// Plan builds what Apply needs to change the running sensors to those of
// cfg (a reload): the source of every sensor added or changed. Nothing
// changes yet, so a failure changes nothing; a plan not applied is
// discarded with Discard. Plan and Apply are not for concurrent use.
func (p *Poller) Plan(cfg *config.Config) (*Plan, error) {
	p.mu.Lock()
	old := p.sensors
	p.mu.Unlock()
	byName := make(map[string]*sensor, len(old))
	for _, s := range old {
		byName[s.cfg.Name] = s
	}
	pl := &Plan{p: p, kept: map[*sensor]bool{}, named: map[string]bool{}, running: byName}
	for i := range cfg.Sensors {
		c := &cfg.Sensors[i]
		pl.named[c.Name] = true
		if s, ok := byName[c.Name]; ok && reflect.DeepEqual(*s.cfg, *c) {
			pl.next = append(pl.next, s)
			pl.kept[s] = true
			continue
		}
		s, err := p.build(c)
		if err != nil {
			pl.Discard()
			return nil, err
		}
		pl.next = append(pl.next, s)
		pl.started = append(pl.started, s)
		if byName[c.Name] != nil {
			pl.Changes.Changed = append(pl.Changes.Changed, c.Name)
		} else {
			pl.Changes.Added = append(pl.Changes.Added, c.Name)
		}
	}
	for _, s := range old {
		if !pl.kept[s] {
			pl.stopped = append(pl.stopped, s)
			if !pl.named[s.cfg.Name] {
				pl.Changes.Removed = append(pl.Changes.Removed, s.cfg.Name)
			}
		}
	}
	return pl, nil
}

// Plan is a change of the running sensors, built by Poller.Plan.
type Plan struct {
	Changes Changes

	p                *Poller
	next             []*sensor // the sensors after it, in the config's order
	started, stopped []*sensor
	kept             map[*sensor]bool
	named            map[string]bool    // names after it
	running          map[string]*sensor // the sensors before it, by name
}

// Discard drops a plan that will not be applied: the metrics of the
// sensors it would have added.
func (pl *Plan) Discard() {
	for _, s := range pl.started {
		if pl.running[s.cfg.Name] == nil {
			pl.p.m.Sensors.Remove(s.cfg.Name)
		}
		s.close() // built for the plan, never run
	}
}

// Apply applies the plan while Run runs. A sensor whose config is unchanged
// keeps running untouched; one removed stops; one added or changed starts at
// once, its seq continuing from the last one of its name. Receivers shared
// by push sensors keep running across it.
func (p *Poller) Apply(ctx context.Context, pl *Plan) error {
	if len(pl.started) == 0 && len(pl.stopped) == 0 {
		return nil
	}
	release := p.receivers.Hold()
	defer release()
	if err := p.onLoop(ctx, func(sc *scheduler) {
		for _, s := range pl.stopped {
			sc.stop(s)
		}
	}); err != nil {
		pl.Discard()
		return err
	}
	// Outside the loop, so that a slow source stalls no other sensor.
	for _, s := range pl.stopped {
		s.work.Wait()
		s.close()
		s.saveSeqs()
		if !pl.named[s.cfg.Name] {
			p.m.Sensors.Remove(s.cfg.Name)
		}
	}
	p.mu.Lock()
	p.sensors = pl.next
	p.mu.Unlock()
	return p.onLoop(ctx, func(sc *scheduler) {
		for _, s := range pl.started {
			sc.start(s)
		}
	})
}

// Changes are the sensors a reload added, removed and changed, by name.
type Changes struct {
	Added, Removed, Changed []string
}

// onLoop runs f on Run's loop and waits for it.
func (p *Poller) onLoop(ctx context.Context, f func(*scheduler)) error {
	done := make(chan struct{})
	select {
	case p.changes <- func(sc *scheduler) { f(sc); close(done) }:
	case <-p.done:
		return errors.New("the poller has stopped")
	case <-ctx.Done():
		return ctx.Err()
	}
	<-done
	return nil
}

// scheduler is Run's state: the pulled sensors by their next read, and the
// pushed ones running.
type scheduler struct {
	p    *Poller
	ctx  context.Context
	heap schedule
	push map[*sensor]bool
}

// start starts s: its first read now, or its push runner.
func (sc *scheduler) start(s *sensor) {
	s.started = sc.p.now()
	if s.push != nil {
		s.ctx, s.cancel = context.WithCancel(sc.ctx)
		s.stats.SetStaleAfter(s.cfg.StaleAfter.D())
		sc.push[s] = true
		s.work.Add(1)
		go sc.p.runPush(s)
		return
	}
	s.next = s.started
	heap.Push(&sc.heap, s)
}

// stop stops s; a read in flight ends soon (its context is cancelled), and
// what it read is dropped.
func (sc *scheduler) stop(s *sensor) {
	s.stop()
	if s.push != nil {
		delete(sc.push, s)
		return
	}
	heap.Remove(&sc.heap, s.index)
}

func (sc *scheduler) stopAll() {
	var all []*sensor
	for len(sc.heap) > 0 {
		all = append(all, sc.heap[0])
		sc.stop(sc.heap[0])
	}
	for s := range sc.push {
		all = append(all, s)
		sc.stop(s)
	}
	for _, s := range all {
		s.work.Wait()
		s.close()
	}
}

// close closes a stopped sensor's source if it holds something (a modbus
// sensor its share of a serial port): io.Closer, called once its last read
// or Run is over.
func (s *sensor) close() {
	if c, ok := s.src.(io.Closer); ok {
		c.Close()
	}
}

// checkHeard logs a push sensor that was not heard within its stale_after,
// once, and when it is heard again.
func (sc *scheduler) checkHeard(now time.Time) {
	for s := range sc.push {
		up := s.stats.Up()
		switch {
		case !up && !s.quiet && now.Sub(s.started) >= s.cfg.StaleAfter.D():
			s.quiet = true
			sc.p.log.Warn("sensor not heard within stale_after", "sensor", s.cfg.Name, "stale_after", s.cfg.StaleAfter.String())
		case up && s.quiet:
			s.quiet = false
			sc.p.log.Info("sensor heard again", "sensor", s.cfg.Name)
		}
	}
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
