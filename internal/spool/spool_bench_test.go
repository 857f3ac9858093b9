package spool

import (
	"testing"
	"time"
)

// BenchmarkAppendAck appends a reading and acks the one lag appends
// earlier, as a publisher with lag messages in flight does.
//
//   - memory: the memory spool.
//   - disk: the durable spool with the broker keeping up (acks come before
//     the commit, so records never reach the disk; seqs are committed
//     every SyncInterval).
//   - disk-backlog: acks come after the commit (an outage draining), so
//     every record is written and then deleted; the benchmark waits for
//     the commits, so their cost (fsync included) is in ns/op.
func BenchmarkAppendAck(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchAppendAck(b, NewMemory(1<<20, 1<<40, 1), 0)
	})
	b.Run("disk", func(b *testing.B) {
		benchAppendAck(b, openTestDisk(b, Options{SyncInterval: 200 * time.Millisecond}), 0)
	})
	b.Run("disk-backlog", func(b *testing.B) {
		d := openTestDisk(b, Options{}) // commits when the loop says
		benchAppendAck(b, d, 2*flushOps, func() { commitNow(b, d) })
	})
}

func benchAppendAck(b *testing.B, q Queue, lag uint64, commit ...func()) {
	r := Record{Topic: "plant/boiler/temp", Payload: []byte(`{"v":21.5,"unit":"C"}`), QoS: 1, SeqKey: "boiler/temp"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Seq, r.Time = uint64(i), int64(i)
		q.Append(&r)
		if r.ID > lag && !q.Ack(r.ID-lag) {
			b.Fatalf("ack %d failed", r.ID-lag)
		}
		if len(commit) > 0 && r.ID%flushOps == 0 {
			commit[0]()
		}
	}
}
