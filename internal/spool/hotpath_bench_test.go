package spool_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/spool"
)

// BenchmarkPublisherCycle is the spool's part of the hot path as the
// daemon drives it: the poller appends a burst of readings (one per
// sensor), the publisher peeks them in batches of 64 from its cursor and
// acks each one as its PUBACK arrives, waiting on Notify when a seq lease
// is being committed. One op is one reading. It goes through spool.Open,
// as the daemon does, with the daemon's default bounds.
// (BenchmarkAppendAck in spool_bench_test.go is the bare append+ack.)
func BenchmarkPublisherCycle(b *testing.B) {
	for _, kind := range []string{"memory", "disk"} {
		for _, burst := range []int{2, 64, 1024} {
			b.Run(fmt.Sprintf("%s/burst=%d", kind, burst), func(b *testing.B) {
				opts := spool.Options{MaxMessages: 100000, MaxBytes: 64 << 20}
				if kind == "disk" {
					opts.Dir = b.TempDir()
				}
				q, err := spool.Open(opts)
				if err != nil {
					b.Fatal(err)
				}
				defer q.Close()
				payload := []byte(`{"sensor":"living-room","quantity":"temperature","value":21.53,"unit":"°C","time":"2026-11-28T06:00:00.123Z","seq":17}`)
				r := spool.Record{Topic: "gatewayd/gw/living-room/temperature", QoS: 1, SeqKey: "living-room/temperature"}
				buf := make([]spool.Record, 0, 64)
				var cursor uint64
				now := time.Now().UnixNano()
				b.ReportAllocs()
				for done := 0; done < b.N; {
					n := min(burst, b.N-done)
					for range n {
						r.Seq++
						r.Time = now
						r.Payload = payload
						q.Append(&r)
					}
					for q.Len() > 0 {
						recs := q.Peek(cursor, buf)
						if len(recs) == 0 {
							<-q.Notify() // a seq lease being committed
							continue
						}
						for _, rec := range recs {
							if !q.Ack(rec.ID) {
								b.Fatalf("ack %d failed", rec.ID)
							}
							cursor = rec.ID
						}
					}
					done += n
				}
				if q.Len() != 0 {
					b.Fatalf("%d records left", q.Len())
				}
			})
		}
	}
}
