package session

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// BenchmarkPublish is the session's cost per QoS 1 publish with a window of
// 100 in flight, per protocol, through mochi in the same process (the
// broker's work included): the two clients side by side.
func BenchmarkPublish(b *testing.B) {
	payload := []byte(`{"sensor":"living-room","quantity":"temperature","value":21.53,"unit":"°C","time":"2026-11-28T06:00:00.123Z","seq":17}`)
	for _, proto := range protocolsUnderTest {
		b.Run(fmt.Sprintf("v%d", proto), func(b *testing.B) {
			br := testbroker.Start(b, testbroker.Options{})
			r := startBench(b, Options{Broker: brokerOptions(br.URL(), "bench"), Protocol: proto})
			window := make(chan Token, 100)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for tok := range window {
					<-tok.Done()
					if tok.Error() != nil {
						b.Error(tok.Error())
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				window <- r.PublishWith("gatewayd/gw/living-room/temperature", 1, false, JSON|Expiring, payload)
			}
			close(window)
			<-done
		})
	}
}

// startBench runs a session for a benchmark and returns its connection.
func startBench(b *testing.B, o Options) *Conn {
	b.Helper()
	o.Broker.Availability.Topic = ""
	s, err := New(o, slog.New(slog.DiscardHandler), metrics.New("bench"), metrics.NewLiveness(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	b.Cleanup(func() { cancel(); <-done })
	var c *Conn
	testbroker.Eventually(b, 10*time.Second, "connected", func() bool {
		c, _ = s.Current()
		return c != nil
	})
	return c
}
