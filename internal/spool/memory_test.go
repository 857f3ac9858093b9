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
