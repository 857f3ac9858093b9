package main

import (
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	embedded "github.com/gatewayd/gatewayd/internal/broker"
)

func TestBaselineReadingsLookLikeGatewayds(t *testing.T) {
	r := newReadings("bench", "run1", 3)
	at := time.Date(2026, 11, 28, 6, 0, 0, 123_000_000, time.UTC)
	var msgs [2]message
	r.read(2, at, &msgs)
	r.read(2, at, &msgs)
	if msgs[0].topic != "bench/run1/s2/temperature" || msgs[1].topic != "bench/run1/s2/humidity" {
		t.Fatalf("topics %q %q", msgs[0].topic, msgs[1].topic)
	}
	var got struct {
		Sensor, Quantity, Unit, Time string
		Value                        float64
		Seq                          uint64
	}
	if err := json.Unmarshal(msgs[0].payload, &got); err != nil {
		t.Fatalf("%s: %v", msgs[0].payload, err)
	}
	if got.Sensor != "s2" || got.Quantity != "temperature" || got.Unit != "°C" || got.Time != "2026-11-28T06:00:00.123Z" || got.Seq != 2 {
		t.Fatalf("payload %s", msgs[0].payload)
	}
	if &msgs[0].payload[0] == &msgs[1].payload[0] {
		t.Fatal("payloads share memory; paho does not copy them")
	}
}

func TestGeneratedConfigsAreValid(t *testing.T) {
	for _, c := range []gwConfig{
		{run: "gatewayd-1", root: "bench", metrics: "127.0.0.1:0", url: "tcp://127.0.0.1:1883", sensors: 1, interval: 10 * time.Second, qos: 1, window: 100},
		{run: "gatewayd-disk-2", root: "bench", metrics: "127.0.0.1:0", url: "tcp://127.0.0.1:1883", sensors: 10, interval: 10 * time.Millisecond, qos: 0, window: 1, dir: t.TempDir()},
		{run: "gatewayd-3", root: "scale", metrics: "127.0.0.1:0", url: "tcp://127.0.0.1:1883", sensors: 10000, interval: time.Second, qos: 1, window: 100},
	} {
		if err := c.check(); err != nil {
			t.Errorf("%s: %v", c.run, err)
		}
	}
}

func TestSubscriberTally(t *testing.T) {
	h := &hub{runs: map[string]*tally{}}
	h.track("r")
	h.record("r", true)
	r := newReadings("bench", "r", 1)
	var msgs [2]message
	at := time.Now()
	for range 3 {
		r.read(0, at, &msgs)
		h.onMessage(msgs[0].topic, msgs[0].payload, at.Add(5*time.Millisecond))
	}
	r.read(0, at, &msgs) // seq 4 is lost
	r.read(0, at, &msgs)
	h.onMessage(msgs[0].topic, msgs[0].payload, at.Add(5*time.Millisecond))
	h.onMessage(msgs[0].topic, msgs[0].payload, at.Add(5*time.Millisecond)) // a duplicate
	h.onMessage("elsewhere/x", msgs[0].payload, at)
	s := h.snapshot("r")
	if s.n != 5 || s.gaps != 1 || s.dups != 1 {
		t.Fatalf("tally %+v", s)
	}
	p50, p99, n := h.latency("r")
	// The payload's time has milliseconds: 5 ms, less what was cut.
	if n != 5 || p50 < 4*time.Millisecond || p50 > 6*time.Millisecond || p99 < p50 {
		t.Fatalf("latency p50 %s p99 %s n %d", p50, p99, n)
	}
}

// TestTapTimesTheFirstReadingPuback runs the bare paho publisher through a
// tap in front of the embedded broker.
func TestTapTimesTheFirstReadingPuback(t *testing.T) {
	b, err := embedded.Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tp, err := newTap(b.Addr(), "bench/")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.close()
	p, err := NewBaselinePublisher(BaselineOptions{URL: tp.url(), ClientID: "tap-test"}, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	p.Publish("status/x", []byte("online")) // not a reading
	time.Sleep(50 * time.Millisecond)
	if _, ok := tp.firstAckAfter(t0); ok {
		t.Fatal("the PUBACK of a non-reading was taken for a reading's")
	}
	r := newReadings("bench", "tap", 1)
	var msgs [2]message
	r.read(0, time.Now(), &msgs)
	p.Publish(msgs[0].topic, msgs[0].payload)
	if _, ok := tp.waitAck(t0, 5*time.Second, nil); !ok {
		t.Fatal("no reading PUBACK seen")
	}
	if err := p.Close(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if p.Acked() != 2 {
		t.Fatalf("acked %d", p.Acked())
	}
}

func TestSampleOwnProcess(t *testing.T) {
	u, err := sample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.cpu <= 0 || u.hwm <= 0 || u.rss <= 0 || u.rss > u.hwm || u.thrs < 1 {
		t.Fatalf("%+v", u)
	}
}
