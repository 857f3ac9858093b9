package spool

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The Queue contract, checked on every implementation. For the disk spool
// settle commits the leases of the seqs appended (Peek returns a record
// only once its seq is leased on disk), and in the second case every
// record too, so that the same steps run once on records in memory and
// once on records read back from the log.
type queueCase struct {
	name   string
	open   func(t *testing.T, maxMsgs int, maxBytes int64) Queue
	settle func(t *testing.T, q Queue)
}

func queueCases() []queueCase {
	disk := func(t *testing.T, maxMsgs int, maxBytes int64) Queue {
		return openTestDisk(t, Options{MaxMessages: maxMsgs, MaxBytes: maxBytes})
	}
	return []queueCase{
		{"memory", func(t *testing.T, maxMsgs int, maxBytes int64) Queue {
			return NewMemory(maxMsgs, maxBytes, 1)
		}, func(*testing.T, Queue) {}},
		{"disk-pending", disk, func(t *testing.T, q Queue) { settle(t, q.(*Disk)) }},
		{"disk-committed", disk, func(t *testing.T, q Queue) { commitNow(t, q.(*Disk)) }},
	}
}

func TestQueueOrderAndAck(t *testing.T) {
	for _, c := range queueCases() {
		t.Run(c.name, func(t *testing.T) {
			q := c.open(t, 100, 1<<20)
			for i := 1; i <= 10; i++ {
				if d := q.Append(rec(i)); d != 0 {
					t.Fatalf("dropped %d", d)
				}
			}
			c.settle(t, q)
			wantPeek(t, q, 0, 4, "[1 2 3 4]")
			wantPeek(t, q, 8, 4, "[9 10]")
			for _, id := range []uint64{3, 2} {
				if !q.Ack(id) {
					t.Fatalf("ack %d failed", id)
				}
			}
			if q.Ack(3) {
				t.Fatal("second ack of 3 succeeded")
			}
			c.settle(t, q)
			if q.Ack(3) {
				t.Fatal("ack of 3 after the commit succeeded")
			}
			wantPeek(t, q, 0, 4, "[1 4 5 6]")
			wantOldest(t, q, 1)
			q.Ack(1)
			wantOldest(t, q, 4)
			if q.Len() != 7 || q.Bytes() != 6*rec(4).Size()+rec(10).Size() {
				t.Fatalf("len %d bytes %d", q.Len(), q.Bytes())
			}
			for id := uint64(4); id <= 10; id++ {
				q.Ack(id)
			}
			if q.Len() != 0 || q.Bytes() != 0 {
				t.Fatalf("len %d bytes %d after acking all", q.Len(), q.Bytes())
			}
			if _, ok := q.Oldest(); ok {
				t.Fatal("oldest of an empty spool")
			}
			c.settle(t, q)
			q.Append(rec(11))
			c.settle(t, q)
			wantPeek(t, q, 0, 4, "[11]")
			if q.Seqs()["s/q"] != 11 {
				t.Fatalf("seqs = %v", q.Seqs())
			}
		})
	}
}

func TestQueueDropsOldest(t *testing.T) {
	for _, c := range queueCases() {
		t.Run(c.name, func(t *testing.T) {
			q := c.open(t, 5, 1<<20)
			dropped := 0
			for i := 1; i <= 12; i++ {
				dropped += q.Append(rec(i))
				if i%3 == 0 {
					c.settle(t, q)
				}
			}
			if dropped != 7 || q.Len() != 5 {
				t.Fatalf("dropped %d, len %d", dropped, q.Len())
			}
			wantPeek(t, q, 0, 10, "[8 9 10 11 12]")
			if q.Ack(3) {
				t.Fatal("acked a dropped record")
			}
			if got := q.Seqs()["s/q"]; got != 12 {
				t.Fatalf("seq after drops %d, want 12", got)
			}
			// Holes are not records: with 9 and 11 acked, two appends drop
			// 8 and 10.
			q.Ack(9)
			q.Ack(11)
			c.settle(t, q)
			if d := q.Append(rec(13)) + q.Append(rec(14)) + q.Append(rec(15)); d != 1 {
				t.Fatalf("dropped %d, want 1", d)
			}
			c.settle(t, q)
			wantPeek(t, q, 0, 10, "[10 12 13 14 15]")
			wantOldest(t, q, 10)
		})
	}
}

func TestQueueByteBound(t *testing.T) {
	for _, c := range queueCases() {
		t.Run(c.name, func(t *testing.T) {
			size := rec(1).Size()
			q := c.open(t, 1000, 3*size)
			dropped := 0
			for i := 1; i <= 10; i++ {
				dropped += q.Append(rec(i % 10))
				c.settle(t, q)
			}
			if q.Len() != 3 || dropped != 7 || q.Bytes() != 3*size {
				t.Fatalf("len %d dropped %d bytes %d", q.Len(), dropped, q.Bytes())
			}
		})
	}
}

// TestQueueMatchesMemory runs random operations on the disk spool and on
// the memory spool, which is the reference, and compares every answer.
func TestQueueMatchesMemory(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1))
			maxMsgs := 5 + rng.IntN(40)
			maxBytes := int64(maxMsgs) * 60
			ref := NewMemory(maxMsgs, maxBytes, 1)
			d := openTestDisk(t, Options{MaxMessages: maxMsgs, MaxBytes: maxBytes})
			for op := range 3000 {
				switch n := rng.IntN(100); {
				case n < 40:
					payload := bytes.Repeat([]byte{byte(op)}, rng.IntN(30))
					// No seq: this is about the records, and Peek would
					// wait for the leases of seqs.
					r := &Record{Topic: "t", Payload: payload, Time: int64(op)}
					r2 := *r
					if a, b := ref.Append(r), d.Append(&r2); a != b || r.ID != r2.ID {
						t.Fatalf("op %d: append dropped %d/%d, ID %d/%d", op, a, b, r.ID, r2.ID)
					}
				case n < 75:
					id := ref.nextAfter() - min(ref.nextAfter(), 1+uint64(rng.IntN(2*maxMsgs)))
					if a, b := ref.Ack(id), d.Ack(id); a != b {
						t.Fatalf("op %d: ack %d = %v, disk %v", op, id, a, b)
					}
				case n < 85:
					commitNow(t, d)
				default:
					after := ref.nextAfter() - min(ref.nextAfter(), uint64(rng.IntN(3*maxMsgs)))
					n := rng.IntN(maxMsgs)
					a, b := ref.Peek(after, make([]Record, 0, n)), d.Peek(after, make([]Record, 0, n))
					if !sameRecords(a, b) {
						t.Fatalf("op %d: peek(%d, %d) = %v, disk %v", op, after, n, a, b)
					}
				}
				ta, oka := ref.Oldest()
				tb, okb := d.Oldest()
				if ref.Len() != d.Len() || ref.Bytes() != d.Bytes() || oka != okb || !ta.Equal(tb) {
					t.Fatalf("op %d: len %d/%d bytes %d/%d oldest %v,%v/%v,%v",
						op, ref.Len(), d.Len(), ref.Bytes(), d.Bytes(), ta, oka, tb, okb)
				}
			}
			if !d.Durable() {
				t.Fatal("fell back to memory")
			}
		})
	}
}

func wantPeek(t *testing.T, q Queue, after uint64, n int, want string) {
	t.Helper()
	if got := fmt.Sprint(peekIDs(q, after, n)); got != want {
		t.Fatalf("peek(%d, %d) = %s, want %s", after, n, got, want)
	}
}

func wantOldest(t *testing.T, q Queue, want int64) {
	t.Helper()
	if old, ok := q.Oldest(); !ok || !old.Equal(time.Unix(0, want)) {
		t.Fatalf("oldest = %v, %v; want %d", old.UnixNano(), ok, want)
	}
}

func sameRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameRecord(a[i], b[i]) {
			return false
		}
	}
	return true
}
