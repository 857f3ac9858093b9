package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/gatewayd/gatewayd/internal/spool"
)

// ReadOnce reads every sensor once, concurrently, each with its timeout, and
// writes "TOPIC PAYLOAD" lines to w, in the order of the config. It returns
// an error naming every sensor that failed. Nothing is published.
func (p *Poller) ReadOnce(ctx context.Context, w io.Writer) error {
	outs := make([][]spool.Record, len(p.sensors))
	errs := make([]error, len(p.sensors))
	var wg sync.WaitGroup
	for i, s := range p.sensors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := &onceSink{}
			sp := *p
			sp.sink = q.add
			sp.read(ctx, s)
			outs[i] = q.recs
			if s.failures > 0 {
				errs[i] = fmt.Errorf("sensor %q: read failed (see the log above)", s.cfg.Name)
			} else if len(q.recs) == 0 {
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

// onceSink keeps copies: the poller reuses the record it passes.
type onceSink struct{ recs []spool.Record }

func (o *onceSink) add(r *spool.Record) { o.recs = append(o.recs, *r) }
