package spool

import (
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"
)

// Disk is the durable spool. It writes to disk only what waits: a record
// stays in memory until the broker acknowledges it, and goes to the log
// (wal.go) when it is still unacknowledged SpillAfter after its Append, the
// broker being away or slow. One commit then takes every record still
// waiting in memory, so an outage costs one commit (one fdatasync) per
// SpillAfter, and a connected broker that acknowledges within SpillAfter
// costs none. Records on disk leave memory: only an index of the frames
// and three decoded frames are kept, so an outage of any length costs disk,
// not memory.
//
// A record's seq is published only once a lease covering it is on disk
// (lease.go), so that after a crash numbering resumes above anything that
// can have been published, with a gap of about SeqLease of readings.
//
// When the disk fails at run time, Disk stops writing records (Durable
// turns false): new records stay in memory, those already on disk are
// still read from there, and leases are still written where the disk
// allows it.
type Disk struct {
	mu sync.Mutex

	// The records. Every ID below head is gone (acked or dropped); IDs
	// below memStart went through a commit or are gone; mem.at(i) has ID
	// memStart+i.
	nextID   uint64
	head     uint64
	memStart uint64
	live     int
	bytes    int64
	mem      pending
	memBytes int64      // of the records in mem not yet in a commit
	frames   []frameRef // frames holding live records, oldest first
	// acked holds committed records acked or dropped out of order, at or
	// above head: the log learns of them with the next state entry.
	acked      map[uint64]struct{}
	written    uint64    // records committed since the spool opened
	stateDirty bool      // committed records went since the last state entry
	stateAt    time.Time // of the last state entry
	cache      [cacheFrames]decoded
	cacheTick  uint64

	// The seqs: the last one appended per key, and the leases.
	seqs      map[string]uint64
	leases    map[string]*lease
	gate      uint64 // Peek returns no ID from here on: its seq is not leased yet
	wantLease bool   // a lease is due for renewal
	wakeAt    int64  // clock when the flusher wakes up next, if nothing wakes it before

	durable  bool // records are written (false after a disk failure, and after Close)
	leasesOK bool // leases are written (false once that failed too)
	closed   bool
	after    []func() // callbacks to run once mu is released

	w           *wal
	unlockDir   func()
	dir         string
	log         *slog.Logger
	onDiskError func(error)
	onCommit    func()
	maxMsgs     int
	maxBytes    int64
	spillAfter  time.Duration
	leaseFor    time.Duration // SeqLease; shorter in tests
	renewAhead  time.Duration
	epoch       time.Time

	notify    chan struct{}
	kick      chan struct{}
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	flushMu sync.Mutex // serializes flush
	fw      frameWriter
	fl      flusherBufs
}

// frameRef is a committed frame that holds records.
type frameRef struct {
	seg         *segment
	off         int64
	n           int // bytes, header included
	first, last uint64
	live        int   // its records not gone
	bytes       int64 // their size
}

// decoded is a frame read back, its records in ID order.
type decoded struct {
	seg  *segment
	off  int64
	recs []Record
	used uint64 // cacheTick when last used
}

// cacheFrames is how many frames read back are kept decoded: one where the
// head is (drops, Oldest), one where the publisher peeks, one where its
// acknowledgements are (behind the peeks by up to max_inflight).
const cacheFrames = 3

const (
	// DefaultSpillAfter is how long a record may wait for its
	// acknowledgement in memory before it is written to disk.
	DefaultSpillAfter = time.Second
	// earlyBytes of records waiting in memory start a commit before they
	// are SpillAfter old: a burst, or a high rate with the broker away.
	earlyBytes = 4 << 20
	// A commit is sliced into frames of at most this many records and
	// bytes, bounding the memory one frame takes to write and to read back.
	maxBatch      = 2048
	maxBatchBytes = 256 << 10
	// stateEvery bounds how stale the log's view of the acknowledged
	// committed records gets while a backlog drains: after a crash, what
	// was acknowledged since is sent again.
	stateEvery = time.Second
	noGate     = math.MaxUint64
)

// Append implements Queue. It returns at once; the record reaches the disk
// only if it is still unacknowledged SpillAfter from now.
func (d *Disk) Append(r *Record) int {
	d.mu.Lock()
	r.ID = d.nextID
	d.nextID++
	at := d.clock()
	kick := false
	if due := at + int64(d.spillAfter); due < d.wakeAt { // the flusher sleeps past this one's due time
		d.wakeAt, kick = due, true
	}
	d.mem.push(memEntry{rec: *r, at: at})
	size := r.Size()
	d.live++
	d.bytes += size
	d.memBytes += size
	if d.memBytes >= earlyBytes {
		kick = true
	}
	if r.SeqKey != "" {
		d.seqs[r.SeqKey] = r.Seq
		if d.needLease(r) {
			kick = true
		}
	}
	dropped := d.trim()
	d.unlock()
	if kick {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	select {
	case d.notify <- struct{}{}:
	default:
	}
	return dropped
}

// clock is the time since the spool opened, monotonic.
func (d *Disk) clock() int64 { return int64(time.Since(d.epoch)) }

// trim drops the oldest records while over a bound; d.mu is held.
func (d *Disk) trim() int {
	dropped := 0
	for d.live > 0 && (d.live > d.maxMsgs || d.bytes > d.maxBytes) {
		id, size, _, ok := d.front()
		if !ok {
			break
		}
		d.remove(id, size)
		dropped++
	}
	return dropped
}

// remove marks live record id, of size size, gone; d.mu is held.
func (d *Disk) remove(id uint64, size int64) {
	d.live--
	d.bytes -= size
	if id >= d.memStart {
		e := d.mem.at(int(id - d.memStart))
		e.acked = true
		if !e.written {
			d.memBytes -= size
		}
	} else {
		d.acked[id] = struct{}{}
		d.stateDirty = true
		if f := d.frameOf(id); f != nil {
			f.live--
			f.bytes -= size
		}
	}
	if id == d.head {
		d.front()
	}
}

// front returns the oldest record held (its ID, size and time), first
// moving head up to it and letting go of what lies below; d.mu is held.
// Committed records are read back from the disk; a frame that cannot be
// read is lost, logged, and makes the spool stop writing records.
func (d *Disk) front() (id uint64, size, at int64, ok bool) {
	for d.mem.len() > 0 && d.mem.at(0).acked && !d.mem.at(0).written {
		d.mem.pop(1)
		d.memStart++
	}
	for d.head < d.nextID {
		if d.head >= d.memStart {
			i := int(d.head - d.memStart)
			if i >= d.mem.len() {
				break // the bookkeeping is wrong; do not loop
			}
			if e := d.mem.at(i); !e.acked {
				return e.rec.ID, e.rec.Size(), e.rec.Time, true
			}
			d.head++
			continue
		}
		if _, gone := d.acked[d.head]; gone {
			delete(d.acked, d.head)
			d.head++
			continue
		}
		for len(d.frames) > 0 && (d.frames[0].last < d.head || d.frames[0].live == 0) {
			d.frames = d.frames[1:]
		}
		if len(d.frames) == 0 {
			d.head = d.memStart
			continue
		}
		f := &d.frames[0]
		d.head = max(d.head, f.first)
		recs := d.read(f)
		if recs == nil {
			continue // lost; read has dropped it
		}
		i := sort.Search(len(recs), func(i int) bool { return recs[i].ID >= d.head })
		if i == len(recs) {
			d.head = f.last + 1
			continue
		}
		if r := &recs[i]; r.ID == d.head {
			if _, gone := d.acked[r.ID]; !gone {
				return r.ID, r.Size(), r.Time, true
			}
		} else {
			d.head = r.ID
		}
	}
	return 0, 0, 0, false
}

// frameOf returns the committed frame that holds id, if any; d.mu is held.
func (d *Disk) frameOf(id uint64) *frameRef {
	i := sort.Search(len(d.frames), func(i int) bool { return d.frames[i].last >= id })
	if i < len(d.frames) && d.frames[i].first <= id {
		return &d.frames[i]
	}
	return nil
}

// read returns the records of committed frame f, from the cache or the
// disk; d.mu is held. A frame that cannot be read (an I/O error, rot) is
// dropped with its records, which are counted as lost; nil then.
func (d *Disk) read(f *frameRef) []Record {
	d.cacheTick++
	slot := &d.cache[0]
	for i := range d.cache {
		c := &d.cache[i]
		if c.seg == f.seg && c.off == f.off && c.recs != nil {
			c.used = d.cacheTick
			return c.recs
		}
		if c.used < slot.used {
			slot = c // the least recently used
		}
	}
	b, err := d.w.readFrame(f.seg, f.off, f.n)
	var c frameContent
	if err == nil {
		c, err = decodeFrame(b[frameHeader:])
	}
	if err != nil {
		d.lose(f, err)
		return nil
	}
	*slot = decoded{seg: f.seg, off: f.off, recs: c.recs, used: d.cacheTick}
	return c.recs
}

// lose drops frame f, unreadable, with its live records; d.mu is held.
func (d *Disk) lose(f *frameRef, cause error) {
	d.log.Error("buffer records unreadable on disk; lost", "dir", d.dir, "records", f.live, "err", cause)
	d.live -= f.live
	d.bytes -= f.bytes
	for id := range d.acked {
		if id >= f.first && id <= f.last {
			delete(d.acked, id)
		}
	}
	for i := range d.frames {
		if d.frames[i].seg == f.seg && d.frames[i].off == f.off {
			d.frames = append(d.frames[:i:i], d.frames[i+1:]...)
			break
		}
	}
	d.fallBack(cause)
}

// Peek implements Queue. Committed records are read from the disk, the
// others from memory; none from the gate on (its seq is not leased yet).
func (d *Disk) Peek(after uint64, buf []Record) []Record {
	buf = buf[:0]
	if after == math.MaxUint64 {
		return buf
	}
	d.mu.Lock()
	defer d.unlock()
	d.advanceGate()
	limit := min(d.gate, d.nextID)
	start := max(after+1, d.head)
	for i := d.firstFrame(start); i < len(d.frames) && start < d.memStart && len(buf) < cap(buf); i++ {
		f := &d.frames[i]
		if f.live == 0 {
			start = max(start, f.last+1)
			continue
		}
		recs := d.read(f)
		if recs == nil {
			i-- // read dropped frame i
			continue
		}
		for j := sort.Search(len(recs), func(j int) bool { return recs[j].ID >= start }); j < len(recs) && len(buf) < cap(buf); j++ {
			if _, gone := d.acked[recs[j].ID]; !gone && recs[j].ID >= d.head {
				buf = append(buf, recs[j])
			}
		}
		start = max(start, f.last+1)
	}
	for id := max(start, d.memStart); id < limit && len(buf) < cap(buf); id++ {
		if e := d.mem.at(int(id - d.memStart)); !e.acked {
			buf = append(buf, e.rec)
		}
	}
	return buf
}

// firstFrame is the index of the first frame with records at or above id.
func (d *Disk) firstFrame(id uint64) int {
	return sort.Search(len(d.frames), func(i int) bool { return d.frames[i].last >= id })
}

// Ack implements Queue.
func (d *Disk) Ack(id uint64) bool {
	d.mu.Lock()
	defer d.unlock()
	if id < d.head || id >= d.nextID {
		return false
	}
	if id >= d.memStart {
		e := d.mem.at(int(id - d.memStart))
		if e.acked {
			return false
		}
		d.remove(id, e.rec.Size())
		return true
	}
	if _, gone := d.acked[id]; gone {
		return false
	}
	f := d.frameOf(id)
	if f == nil {
		return false
	}
	recs := d.read(f)
	i := sort.Search(len(recs), func(i int) bool { return recs[i].ID >= id })
	if i == len(recs) || recs[i].ID != id {
		return false
	}
	d.remove(id, recs[i].Size())
	return true
}

// Written is how many records were written to disk since the spool
// opened: those that waited SpillAfter for their acknowledgement (or were
// still waiting at Close).
func (d *Disk) Written() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.written
}

// Len implements Queue.
func (d *Disk) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.live
}

// Bytes implements Queue.
func (d *Disk) Bytes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bytes
}

// Oldest implements Queue.
func (d *Disk) Oldest() (time.Time, bool) {
	d.mu.Lock()
	_, _, at, ok := d.front()
	d.unlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, at), true
}

// Seqs implements Queue.
func (d *Disk) Seqs() map[string]uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]uint64, len(d.seqs))
	for k, v := range d.seqs {
		out[k] = v
	}
	return out
}

// Notify implements Queue.
func (d *Disk) Notify() <-chan struct{} { return d.notify }

// Durable implements Queue: false once the disk failed, and after Close.
func (d *Disk) Durable() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.durable
}

// Close commits what waits in memory, the state and the exact last seqs,
// and closes the store; call it after the last Append. The spool is then
// an empty memory spool: what is appended after Close is not saved.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() {
		close(d.quit)
		<-d.done
	})
	return d.closeErr
}

// unlock releases d.mu, then runs the callbacks queued meanwhile (so that
// a callback may call the spool).
func (d *Disk) unlock() {
	after := d.after
	d.after = nil
	d.mu.Unlock()
	for _, f := range after {
		f()
	}
}
