package main

import (
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	embedded "github.com/gatewayd/gatewayd/internal/broker"
)

func startEmbedded(tb testing.TB) string {
	tb.Helper()
	b, err := embedded.Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return "tcp://" + b.Addr()
}

// TestBaselineClients checks the bench's yardstick: every publish of the
// bare publisher is acknowledged and reaches the bare subscriber.
func TestBaselineClients(t *testing.T) {
	url := startEmbedded(t)
	var got atomic.Int64
	sub, err := NewBaselineSubscriber(BaselineOptions{URL: url, ClientID: "sub", CleanSession: true}, "bench/#", 1,
		func(topic string, payload []byte, at time.Time) { got.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := NewBaselinePublisher(BaselineOptions{URL: url, ClientID: "pub"}, 1, 16)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	for i := range n {
		pub.Publish("bench/t/"+strconv.Itoa(i%7), []byte(strconv.Itoa(i)))
	}
	if err := pub.Close(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if pub.Published() != n || pub.Acked() != n || pub.Failed() != 0 {
		t.Fatalf("published %d acked %d failed %d", pub.Published(), pub.Acked(), pub.Failed())
	}
	for deadline := time.Now().Add(10 * time.Second); got.Load() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got.Load() != n {
		t.Fatalf("subscriber got %d of %d", got.Load(), n)
	}
}

func TestBaselineConnectFails(t *testing.T) {
	if _, err := NewBaselinePublisher(BaselineOptions{URL: "tcp://127.0.0.1:1", ClientID: "x", ConnectTimeout: time.Second}, 1, 1); err == nil {
		t.Fatal("connected to a closed port")
	}
}

// BenchmarkBaselinePublish is bare paho's cost per message through the
// embedded broker in the same process (the broker's work is included).
func BenchmarkBaselinePublish(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run("qos"+strconv.Itoa(int(qos)), func(b *testing.B) {
			pub, err := NewBaselinePublisher(BaselineOptions{URL: startEmbedded(b), ClientID: "bench"}, qos, 100)
			if err != nil {
				b.Fatal(err)
			}
			payload := []byte(`{"sensor":"living-room","quantity":"temperature","value":21.53,"unit":"°C","time":"2026-11-28T06:00:00.123Z","seq":17}`)
			b.ReportAllocs()
			for b.Loop() {
				pub.Publish("gatewayd/gw/living-room/temperature", payload)
			}
			if err := pub.Close(10 * time.Second); err != nil {
				b.Fatal(err)
			}
		})
	}
}
