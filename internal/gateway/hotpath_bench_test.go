package gateway

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// The benchmarks here cover gatewayd's own part of the hot path, from a
// reading to the record the publisher hands to paho and back out of the
// buffer on its PUBACK. BenchmarkRender and BenchmarkRenderTopic
// (render_test.go) cover the payload and the topic alone; the spool's own
// append+ack is in internal/spool. Run them with
//
//	go test -run '^$' -bench . -benchmem ./internal/gateway/ ./internal/spool/

// benchPoller is a poller over one simulated sensor (two quantities), as
// the daemon builds it from a config, feeding q.
func benchPoller(b *testing.B, format string, q spool.Queue) (*Poller, *sensor) {
	b.Helper()
	yaml := "gateway: {id: bench}\npublish: {format: " + format + "}\nsensors:\n  - {name: living-room, type: simulated, seed: 1}\n"
	cfg, err := config.Parse("bench.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewPoller(cfg, q, metrics.New("bench"), slog.New(slog.DiscardHandler), metrics.NewLiveness(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	return p, p.sensors[0]
}

// drain is the publisher's part of the spool per batch: Peek what was
// appended, then Ack each record as its PUBACK would.
func drain(b *testing.B, q spool.Queue, cursor *uint64, buf []spool.Record) {
	for _, r := range q.Peek(*cursor, buf) {
		if !q.Ack(r.ID) {
			b.Fatalf("ack %d failed", r.ID)
		}
		*cursor = r.ID
	}
}

func openBenchQueue(b *testing.B, kind string) spool.Queue {
	b.Helper()
	opts := spool.Options{MaxMessages: 100000, MaxBytes: 64 << 20}
	if kind == "disk" {
		opts.Dir = b.TempDir()
	}
	q, err := spool.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { q.Close() })
	return q
}

// BenchmarkReading is gatewayd's whole own part per reading: the poller
// reads the sensor (Source.Read with the read timeout's context), and for
// each of its two readings calibrates, checks the range and the deadband,
// renders the payload, builds the record and appends it to the spool
// (with the metrics of each step); then the publisher's side peeks the
// records and acks them. One op is one reading; allocs/reading counts
// every allocation of that path (goal: at most 2 with the memory buffer).
// Not included: the goroutine Poller.Run starts per read, and paho.
func BenchmarkReading(b *testing.B) {
	for _, kind := range []string{"memory", "disk"} {
		for _, format := range []string{FormatJSON, FormatValue} {
			b.Run(kind+"/"+format, func(b *testing.B) {
				q := openBenchQueue(b, kind)
				p, s := benchPoller(b, format, q)
				ctx := context.Background()
				buf := make([]spool.Record, 0, batchSize)
				var cursor uint64
				p.read(ctx, s) // the series are created on the first read
				drain(b, q, &cursor, buf)
				readings := 0
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.ResetTimer()
				for readings < b.N {
					p.read(ctx, s)
					drain(b, q, &cursor, buf)
					readings += 2
				}
				b.StopTimer()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(readings), "allocs/reading")
				b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(readings), "B/reading")
			})
		}
	}
}

// BenchmarkTake is BenchmarkReading without the source: one reading that
// the source already returned, from take to ack.
func BenchmarkTake(b *testing.B) {
	q := openBenchQueue(b, "memory")
	_, s := benchPoller(b, FormatJSON, q)
	buf := make([]spool.Record, 0, batchSize)
	var cursor uint64
	readings, _ := s.src.Read(context.Background())
	r := readings[0]
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		s.take(r, now)
		drain(b, q, &cursor, buf)
	}
}

// BenchmarkRenderPayload is the log rendering of a received message.
func BenchmarkRenderPayload(b *testing.B) {
	cases := []struct{ name, payload string }{
		{"reading", `{"sensor":"living-room","quantity":"temperature","value":21.53,"unit":"°C","time":"2026-11-28T06:00:00.123Z","seq":17}`},
		{"command", "ON"},
		{"hostile", "x\nlevel=ERROR msg=pwned \x1b[31m\u202e"},
		{"binary", "\xff\xfe\x00\x01\x02\x03\x04\x05\x06\x07"},
		{"long", strings.Repeat("température 21°C ", 64)},
	}
	for _, c := range cases {
		p := []byte(c.payload)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				_, _ = RenderPayload(p)
			}
		})
	}
}

// BenchmarkMessageLogger is the handling of one received message: match
// the subscriptions, count, and log it (to a discarding handler; beyond the
// log rate limit only the counting is left).
func BenchmarkMessageLogger(b *testing.B) {
	subs := []config.Subscription{{Topic: "gatewayd/gw/cmd/#", QoS: 1}, {Topic: "site/+/alarm", QoS: 0}}
	msg := session.Message{Topic: "gatewayd/gw/cmd/relay", QoS: 1, Payload: []byte(`{"relay":1,"state":"on"}`)}
	for _, limited := range []bool{false, true} {
		name := "logged"
		if limited {
			name = "rate-limited"
		}
		b.Run(name, func(b *testing.B) {
			l := NewMessageLogger(subs, metrics.New("bench"), slog.New(slog.NewTextHandler(discard{}, nil)))
			if !limited {
				// A clock a second further at each message: never limited.
				start, n := time.Now(), 0
				l.now = func() time.Time { n++; return start.Add(time.Duration(n) * time.Second) }
			} else {
				l.now = func() time.Time { return time.Unix(0, 0) }
			}
			b.ReportAllocs()
			for b.Loop() {
				l.Handle(msg)
			}
		})
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
