package app

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/homeassistant"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// BenchmarkAppend is the cost discovery adds to every reading: appending
// to the memory buffer as it is, and through observedQueue with every
// series already announced (the steady state), side by side.
//
//	go test -run XXX -bench Append -benchmem ./internal/app/
func BenchmarkAppend(b *testing.B) {
	const series = 2000
	recs := make([]spool.Record, series)
	cfg := homeassistant.Config{Prefix: "homeassistant", Gateway: "gw", Format: "json"}
	for i := range series / 2 {
		name := fmt.Sprintf("s%d", i)
		cfg.Sensors = append(cfg.Sensors, homeassistant.Sensor{Name: name, Topic: "gatewayd/gw/" + name + "/{quantity}"})
		for j, q := range []string{"temperature", "humidity"} {
			recs[2*i+j] = spool.Record{Topic: "gatewayd/gw/" + name + "/" + q, SeqKey: name + "/" + q, Payload: []byte(`{"value":21.5}`), QoS: 1}
		}
	}
	ann := homeassistant.NewAnnouncer(cfg, func() homeassistant.Diagnostics { return homeassistant.Diagnostics{} },
		time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := range recs {
		ann.Observe(recs[i].SeqKey, recs[i].Topic)
	}
	b.Run("observe-only", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			r := &recs[i%series]
			ann.Observe(r.SeqKey, r.Topic)
		}
	})
	for _, bc := range []struct {
		name string
		q    func(spool.Queue) spool.Queue
	}{
		{"plain", func(q spool.Queue) spool.Queue { return q }},
		{"discovery", func(q spool.Queue) spool.Queue { return observedQueue{Queue: q, observe: ann.Observe} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := bc.q(spool.NewMemory(10000, 1<<30, 1)) // full: each append drops the oldest
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := recs[i%series]
				q.Append(&r)
			}
		})
	}
}
