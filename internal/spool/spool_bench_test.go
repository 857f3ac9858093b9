package spool

import (
	"testing"
)

// BenchmarkAppendAck appends a reading and acks the one lag appends
// earlier, as a publisher with lag messages in flight does.
//
//   - memory: the memory spool.
//   - disk: the durable spool with the broker keeping up (acks come long
//     before SpillAfter, so records never reach the disk; only the seq
//     leases are committed, a few times a second at this rate).
//   - disk-backlog: acks come after the commit (an outage draining), so
//     every record is written and read back; the benchmark commits every
//     2048 records and waits for it, so the commits' cost (fdatasync
//     included) is in ns/op.
func BenchmarkAppendAck(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchAppendAck(b, NewMemory(1<<20, 1<<40, 1), 0)
	})
	b.Run("disk", func(b *testing.B) {
		benchAppendAck(b, openTestDisk(b, Options{SpillAfter: DefaultSpillAfter}), 0)
	})
	b.Run("disk-backlog", func(b *testing.B) {
		d := openTestDisk(b, Options{}) // commits records when the loop says
		benchAppendAck(b, d, 2*backlogBatch, func() { commitNow(b, d) })
	})
}

const backlogBatch = 2048

func benchAppendAck(b *testing.B, q Queue, lag uint64, commit ...func()) {
	r := Record{Topic: "plant/boiler/temp", Payload: []byte(`{"v":21.5,"unit":"C"}`), QoS: 1, SeqKey: "boiler/temp"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Seq, r.Time = uint64(i+1), int64(i)
		q.Append(&r)
		if r.ID > lag && !q.Ack(r.ID-lag) {
			b.Fatalf("ack %d failed", r.ID-lag)
		}
		if len(commit) > 0 && r.ID%backlogBatch == 0 {
			commit[0]()
		}
	}
}
