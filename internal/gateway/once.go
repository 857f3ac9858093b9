package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// OnceWait is how long ReadOnce waits for a push sensor to be heard: radio
// sensors transmit every 15 to 60 seconds.
const OnceWait = time.Minute

// ReadOnce reads every sensor once, concurrently, each with its timeout, and
// writes "TOPIC PAYLOAD" lines to w, in the order of the config. A push
// sensor is run until it is first heard, for at most pushWait. It returns
// an error naming every sensor that failed or was not heard. Nothing is
// published; it is not for a poller that Runs.
func (p *Poller) ReadOnce(ctx context.Context, w io.Writer, pushWait time.Duration) error {
	defer p.receivers.Close()
	p.mu.Lock()
	all := p.sensors
	p.mu.Unlock()
	outs := make([][]spool.Record, len(all))
	errs := make([]error, len(all))
	var wg sync.WaitGroup
	for i, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := &onceSink{}
			in := *s.in
			in.sink = q.add
			s.in = &in
			if s.push != nil {
				s.ctx, s.cancel = context.WithCancel(ctx)
				defer s.cancel()
				errs[i] = p.hearOnce(s, pushWait)
			} else {
				p.read(ctx, s)
				if s.failures > 0 {
					errs[i] = fmt.Errorf("sensor %q: read failed (see the log above)", s.cfg.Name)
				}
			}
			outs[i] = q.recs
			if errs[i] == nil && len(q.recs) == 0 {
				errs[i] = fmt.Errorf("sensor %q: no value within its physical range", s.cfg.Name)
			}
		}()
	}
	wg.Wait()
	for _, recs := range outs {
		for _, r := range recs {
			if _, err := fmt.Fprintf(w, "%s %s\n", r.Topic, r.Payload); err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
}

// hearOnce runs a push sensor until its first transmission, for at most wait.
func (p *Poller) hearOnce(s *sensor, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	heard := false
	err := s.push.Run(ctx, func(rs []sensors.Reading) {
		if !heard && len(rs) > 0 {
			heard = true
			s.readings(rs, p.now())
			cancel()
		}
	})
	switch {
	case heard:
		return nil
	case s.ctx.Err() != nil:
		return s.ctx.Err()
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("sensor %q: %w", s.cfg.Name, err)
	}
	return fmt.Errorf("sensor %q: not heard within %s", s.cfg.Name, wait)
}

// onceSink keeps copies: the sensor reuses the record it passes.
type onceSink struct{ recs []spool.Record }

func (o *onceSink) add(r *spool.Record) { o.recs = append(o.recs, *r) }
