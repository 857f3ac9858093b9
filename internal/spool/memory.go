package spool

import (
	"sync"
	"time"
)

// Memory is the in-memory spool: a ring of records in ID order. Records
// acknowledged out of order leave holes that the head skips; the holes are
// bounded by what is in flight.
type Memory struct {
	mu       sync.Mutex
	ring     []slot
	head     int    // index of the oldest slot
	n        int    // slots in use, holes included
	peak     int    // the most slots in use since the ring last drained
	headID   uint64 // ID of ring[head]
	nextID   uint64
	live     int // records held (not acked, not dropped)
	bytes    int64
	maxMsgs  int
	maxBytes int64
	seqs     map[string]uint64
	notify   chan struct{}
}

type slot struct {
	rec   Record
	acked bool
}

const minRing = 64

// NewMemory returns an empty in-memory spool whose first ID is firstID.
func NewMemory(maxMessages int, maxBytes int64, firstID uint64) *Memory {
	if firstID == 0 {
		firstID = 1
	}
	return &Memory{
		ring:     make([]slot, minRing),
		headID:   firstID,
		nextID:   firstID,
		maxMsgs:  maxMessages,
		maxBytes: maxBytes,
		seqs:     map[string]uint64{},
		notify:   make(chan struct{}, 1),
	}
}

// Append implements Queue.
func (m *Memory) Append(r *Record) int {
	m.mu.Lock()
	r.ID = m.nextID
	m.push(r)
	dropped := m.trim()
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
	return dropped
}

// push adds r (whose ID is set) at the tail; m.mu is held.
func (m *Memory) push(r *Record) {
	if m.n == 0 {
		m.headID = r.ID
	}
	if m.n == len(m.ring) {
		m.grow()
	}
	m.ring[(m.head+m.n)%len(m.ring)] = slot{rec: *r}
	m.n++
	m.peak = max(m.peak, m.n)
	m.nextID = r.ID + 1
	m.live++
	m.bytes += r.Size()
	if r.SeqKey != "" {
		m.seqs[r.SeqKey] = r.Seq
	}
}

func (m *Memory) grow() {
	bigger := make([]slot, 2*len(m.ring))
	for i := 0; i < m.n; i++ {
		bigger[i] = m.ring[(m.head+i)%len(m.ring)]
	}
	m.ring, m.head = bigger, 0
}

// trim drops the oldest records while over a bound; m.mu is held.
func (m *Memory) trim() int {
	dropped := 0
	for m.live > 0 && (m.live > m.maxMsgs || m.bytes > m.maxBytes) {
		s := &m.ring[m.head]
		if !s.acked {
			m.live--
			m.bytes -= s.rec.Size()
			dropped++
		}
		m.popHead()
		m.skipAcked()
	}
	return dropped
}

func (m *Memory) popHead() {
	m.ring[m.head] = slot{}
	m.head = (m.head + 1) % len(m.ring)
	m.n--
	m.headID++
	if m.n == 0 {
		m.head = 0
		m.headID = m.nextID
		// Give a drained outage's memory back, but keep a ring that
		// steady bursts (thousands of sensors read at once) need again.
		if len(m.ring) > 4*max(minRing, m.peak) {
			m.ring = make([]slot, max(minRing, 2*m.peak))
		}
		m.peak = 0
	}
}

func (m *Memory) skipAcked() {
	for m.n > 0 && m.ring[m.head].acked {
		m.popHead()
	}
}

// Peek implements Queue.
func (m *Memory) Peek(after uint64, buf []Record) []Record {
	buf = buf[:0]
	m.mu.Lock()
	defer m.mu.Unlock()
	start := m.headID
	if after >= start {
		start = after + 1
	}
	for id := start; id < m.headID+uint64(m.n) && len(buf) < cap(buf); id++ {
		s := &m.ring[(m.head+int(id-m.headID))%len(m.ring)]
		if !s.acked {
			buf = append(buf, s.rec)
		}
	}
	return buf
}

// Ack implements Queue.
func (m *Memory) Ack(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == 0 || id < m.headID || id >= m.headID+uint64(m.n) {
		return false
	}
	s := &m.ring[(m.head+int(id-m.headID))%len(m.ring)]
	if s.acked {
		return false
	}
	m.live--
	m.bytes -= s.rec.Size()
	*s = slot{acked: true}
	m.skipAcked()
	return true
}

// Len implements Queue.
func (m *Memory) Len() int { m.mu.Lock(); defer m.mu.Unlock(); return m.live }

// Bytes implements Queue.
func (m *Memory) Bytes() int64 { m.mu.Lock(); defer m.mu.Unlock(); return m.bytes }

// Oldest implements Queue.
func (m *Memory) Oldest() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, m.ring[m.head].rec.Time), true
}

// Seqs implements Queue.
func (m *Memory) Seqs() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.seqs))
	for k, v := range m.seqs {
		out[k] = v
	}
	return out
}

// Notify implements Queue.
func (m *Memory) Notify() <-chan struct{} { return m.notify }

// Durable implements Queue: a memory spool is not.
func (m *Memory) Durable() bool { return false }

// Close implements Queue.
func (m *Memory) Close() error { return nil }

// nextAfter is the ID the next Append will get.
func (m *Memory) nextAfter() uint64 { m.mu.Lock(); defer m.mu.Unlock(); return m.nextID }
