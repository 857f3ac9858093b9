package spool

import (
	"fmt"
	"testing"
)

func rec(i int) *Record {
	return &Record{Topic: "t", Payload: []byte(fmt.Sprint(i)), QoS: 1, Time: int64(i), SeqKey: "s/q", Seq: uint64(i)}
}

func peekIDs(q Queue, after uint64, n int) []uint64 {
	var ids []uint64
	for _, r := range q.Peek(after, make([]Record, 0, n)) {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestMemoryOrderAndAck(t *testing.T) {
	q := NewMemory(100, 1<<20, 1)
	for i := 1; i <= 10; i++ {
		if d := q.Append(rec(i)); d != 0 {
			t.Fatalf("dropped %d", d)
		}
	}
	if got := fmt.Sprint(peekIDs(q, 0, 4)); got != "[1 2 3 4]" {
		t.Fatalf("peek = %s", got)
	}
	if got := fmt.Sprint(peekIDs(q, 8, 4)); got != "[9 10]" {
		t.Fatalf("peek after 8 = %s", got)
	}
	// Out of order: 3 and 2 before 1.
	for _, id := range []uint64{3, 2} {
		if !q.Ack(id) {
			t.Fatalf("ack %d failed", id)
		}
	}
	if q.Ack(3) {
		t.Fatal("second ack of 3 succeeded")
	}
	if got := fmt.Sprint(peekIDs(q, 0, 4)); got != "[1 4 5 6]" {
		t.Fatalf("peek with holes = %s", got)
	}
	if old, _ := q.Oldest(); old.UnixNano() != 1 {
		t.Fatalf("oldest = %d", old.UnixNano())
	}
	q.Ack(1)
	if old, _ := q.Oldest(); old.UnixNano() != 4 {
		t.Fatalf("oldest after acking the head = %d", old.UnixNano())
	}
	if q.Len() != 7 {
		t.Fatalf("len = %d", q.Len())
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
	q.Append(rec(11))
	if got := fmt.Sprint(peekIDs(q, 0, 4)); got != "[11]" {
		t.Fatalf("IDs restarted: %s", got)
	}
}

func TestMemoryDropsOldest(t *testing.T) {
	q := NewMemory(5, 1<<20, 1)
	dropped := 0
	for i := 1; i <= 12; i++ {
		dropped += q.Append(rec(i))
	}
	if dropped != 7 || q.Len() != 5 {
		t.Fatalf("dropped %d, len %d", dropped, q.Len())
	}
	if got := fmt.Sprint(peekIDs(q, 0, 10)); got != "[8 9 10 11 12]" {
		t.Fatalf("kept %s", got)
	}
	if q.Ack(3) {
		t.Fatal("acked a dropped record")
	}
	if q.Seqs()["s/q"] != 12 {
		t.Fatalf("seqs = %v", q.Seqs())
	}
}

func TestMemoryByteBound(t *testing.T) {
	r := rec(1)
	size := r.Size()
	q := NewMemory(1000, 3*size, 1)
	dropped := 0
	for i := 1; i <= 10; i++ {
		dropped += q.Append(rec(i % 10)) // same size each
	}
	if q.Len() != 3 || dropped != 7 || q.Bytes() != 3*size {
		t.Fatalf("len %d dropped %d bytes %d", q.Len(), dropped, q.Bytes())
	}
}

func TestMemoryDropSkipsAckedHoles(t *testing.T) {
	q := NewMemory(3, 1<<20, 1)
	for i := 1; i <= 3; i++ {
		q.Append(rec(i))
	}
	q.Ack(2) // a hole behind the head
	q.Append(rec(4))
	if d := q.Append(rec(5)); d != 1 {
		t.Fatalf("dropped %d, want 1 (the hole is not a record)", d)
	}
	if got := fmt.Sprint(peekIDs(q, 0, 10)); got != "[3 4 5]" {
		t.Fatalf("kept %s", got)
	}
}

func TestMemoryGrowsAndShrinks(t *testing.T) {
	q := NewMemory(100000, 1<<30, 1)
	for i := 1; i <= 5000; i++ {
		q.Append(rec(i))
	}
	for id := uint64(1); id <= 5000; id++ {
		if !q.Ack(id) {
			t.Fatalf("ack %d", id)
		}
	}
	// A ring that bursts of this size need is kept: no reallocation for
	// thousands of sensors read at the same instant, every interval.
	burst := len(q.ring)
	if burst < 5000 {
		t.Fatalf("ring of %d for 5000", burst)
	}
	cycle := func(n int) { // a burst of n readings, then their acks
		var ids []uint64
		for i := 0; i < n; i++ {
			r := rec(i)
			q.Append(r)
			ids = append(ids, r.ID)
		}
		for _, id := range ids {
			q.Ack(id)
		}
	}
	cycle(3000)
	if len(q.ring) != burst {
		t.Fatalf("ring reallocated for a smaller burst: %d", len(q.ring))
	}
	// Once bursts stay small, the memory of the big one is given back.
	cycle(10)
	cycle(10)
	if len(q.ring) != minRing {
		t.Fatalf("ring not shrunk: %d", len(q.ring))
	}
}
