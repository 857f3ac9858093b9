package spool

import (
	"log/slog"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Disk is the durable spool: records live in a bbolt file, so that they
// survive a restart or a crash. Appends are gathered in memory and written
// by one goroutine in one transaction every SyncInterval, so a reading
// costs a share of an fsync, not one; a record acked before that never
// reaches the disk. Only counts and a small head cache are kept in RAM,
// so an outage of any length costs disk, not memory.
//
// When the disk fails at run time, Disk hands everything it holds to a
// Memory spool and delegates to it from then on (Durable turns false).
type Disk struct {
	mu sync.Mutex

	// The logical state. Every ID below head is gone (acked or dropped);
	// IDs below diskNext went through a commit; mem.at(i) has ID
	// diskNext+i.
	nextID   uint64
	head     uint64
	diskNext uint64
	live     int
	bytes    int64
	seqs     map[string]uint64
	dirty    map[string]uint64 // seqs changed since the last commit began
	mem      pending
	acked    map[uint64]struct{} // committed IDs acked, not yet deleted
	diskLow  uint64              // no key below it is on disk
	ops      int                 // appends and acks since the last commit began

	// The head cache: every live committed record with an ID in
	// [head, cacheEnd), oldest first.
	cache    []headEntry
	cacheBuf []headEntry // cache's whole array
	cacheEnd uint64

	fallback *Memory  // set when the disk failed, and by Close
	after    []func() // callbacks to run once mu is released

	db          *bolt.DB
	dir         string
	log         *slog.Logger
	onDiskError func(error)
	maxMsgs     int
	maxBytes    int64
	interval    time.Duration
	cacheMax    int

	notify    chan struct{}
	kick      chan struct{}
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	flushMu sync.Mutex  // serializes flush
	fl      flusherBufs // used by flush only
}

type headEntry struct {
	id         uint64
	time, size int64
}

const (
	defaultSyncInterval = 200 * time.Millisecond
	defaultHeadCache    = 1024
	flushOps            = 2000 // appends and acks that start a commit early
	// A burst (a loop, a slow disk) is committed in slices, bounding the
	// memory one bbolt transaction takes.
	maxBatch      = 8 * flushOps
	maxBatchBytes = 4 << 20
)

// Append implements Queue. It returns at once: the record reaches the disk
// with the next commit.
func (d *Disk) Append(r *Record) int {
	if m := d.lockDisk(); m != nil {
		return m.Append(r)
	}
	r.ID = d.nextID
	d.nextID++
	d.mem.push(memEntry{rec: *r})
	d.live++
	d.bytes += r.Size()
	if r.SeqKey != "" {
		d.seqs[r.SeqKey] = r.Seq
		d.dirty[r.SeqKey] = r.Seq
	}
	d.countOp()
	dropped := d.trim()
	d.unlock()
	select {
	case d.notify <- struct{}{}:
	default:
	}
	return dropped
}

// trim drops the oldest records while over a bound; d.mu is held.
func (d *Disk) trim() int {
	dropped := 0
	for d.live > 0 && (d.live > d.maxMsgs || d.bytes > d.maxBytes) {
		e, ok, err := d.front()
		if err != nil {
			return dropped + d.fallBack(err)
		}
		if !ok {
			break
		}
		d.head = e.id + 1
		d.live--
		d.bytes -= e.size
		dropped++
	}
	return dropped
}

// front returns the oldest record held, first moving head up to it; d.mu
// is held. It reads the disk when the head cache runs dry.
func (d *Disk) front() (headEntry, bool, error) {
	for d.live > 0 {
		if d.head >= d.diskNext {
			i := d.head - d.diskNext
			if i >= uint64(d.mem.len()) {
				break // the bookkeeping is wrong; do not loop
			}
			if e := d.mem.at(int(i)); !e.acked {
				return headEntry{id: e.rec.ID, time: e.rec.Time, size: e.rec.Size()}, true, nil
			}
			d.head++
			continue
		}
		for len(d.cache) > 0 {
			c := d.cache[0]
			if c.id >= d.head && !d.isAcked(c.id) {
				d.head = c.id
				return c, true, nil
			}
			d.cache = d.cache[1:]
		}
		if d.cacheEnd > d.head { // nothing live left below cacheEnd
			d.head = min(d.cacheEnd, d.diskNext)
			continue
		}
		if err := d.refill(); err != nil {
			return headEntry{}, false, err
		}
	}
	return headEntry{}, false, nil
}

func (d *Disk) isAcked(id uint64) bool {
	_, ok := d.acked[id]
	return ok
}

// Peek implements Queue. Committed records are read from the disk, the
// others from memory.
func (d *Disk) Peek(after uint64, buf []Record) []Record {
	buf = buf[:0]
	if m := d.lockDisk(); m != nil {
		return m.Peek(after, buf)
	}
	start := max(after+1, d.head)
	if after+1 == 0 { // after is the largest ID there is
		start = d.nextID
	}
	if start < d.diskNext && len(buf) < cap(buf) {
		var err error
		if buf, err = d.peekDisk(start, buf); err != nil {
			d.fallBack(err)
			m := d.fallback
			d.unlock()
			return m.Peek(after, buf[:0])
		}
	}
	for id := max(start, d.diskNext); id < d.nextID && len(buf) < cap(buf); id++ {
		if e := d.mem.at(int(id - d.diskNext)); !e.acked {
			buf = append(buf, e.rec)
		}
	}
	d.unlock()
	return buf
}

// Ack implements Queue.
func (d *Disk) Ack(id uint64) bool {
	if m := d.lockDisk(); m != nil {
		return m.Ack(id)
	}
	defer d.unlock()
	if id < d.head || id >= d.nextID {
		return false
	}
	if id >= d.diskNext {
		e := d.mem.at(int(id - d.diskNext))
		if e.acked {
			return false
		}
		e.acked = true
		d.live--
		d.bytes -= e.rec.Size()
		return true
	}
	if d.isAcked(id) {
		return false
	}
	size, ok, err := d.committedSize(id)
	if err != nil {
		d.fallBack(err)
		return d.fallback.Ack(id)
	}
	if !ok {
		return false
	}
	d.acked[id] = struct{}{}
	d.live--
	d.bytes -= size
	d.countOp()
	return true
}

// committedSize is the size of committed record id, from the head cache
// when it covers id; ok is false when the record is gone.
func (d *Disk) committedSize(id uint64) (size int64, ok bool, err error) {
	if id >= d.cacheEnd {
		// Acks come roughly in order: once the cache is drained, one
		// refill serves the next cacheMax of them.
		if _, _, err := d.front(); err != nil {
			return 0, false, err
		}
	}
	if id < d.cacheEnd {
		i := sort.Search(len(d.cache), func(i int) bool { return d.cache[i].id >= id })
		if i < len(d.cache) && d.cache[i].id == id {
			return d.cache[i].size, true, nil
		}
		return 0, false, nil
	}
	return d.sizeOnDisk(id)
}

// Len implements Queue.
func (d *Disk) Len() int {
	if m := d.lockDisk(); m != nil {
		return m.Len()
	}
	defer d.unlock()
	return d.live
}

// Bytes implements Queue.
func (d *Disk) Bytes() int64 {
	if m := d.lockDisk(); m != nil {
		return m.Bytes()
	}
	defer d.unlock()
	return d.bytes
}

// Oldest implements Queue.
func (d *Disk) Oldest() (time.Time, bool) {
	if m := d.lockDisk(); m != nil {
		return m.Oldest()
	}
	e, ok, err := d.front()
	if err != nil {
		d.fallBack(err)
		m := d.fallback
		d.unlock()
		return m.Oldest()
	}
	d.unlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, e.time), true
}

// Seqs implements Queue.
func (d *Disk) Seqs() map[string]uint64 {
	if m := d.lockDisk(); m != nil {
		return m.Seqs()
	}
	defer d.unlock()
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
	return d.fallback == nil
}

// Close commits everything pending and closes the store; call it after
// the last Append. The spool is then an empty memory spool: what is
// appended after Close is not saved.
func (d *Disk) Close() error {
	d.closeOnce.Do(func() {
		close(d.quit)
		<-d.done
		d.mu.Lock()
		if d.fallback == nil {
			d.fallback = NewMemory(d.maxMsgs, d.maxBytes, d.nextID)
			d.fallback.notify = d.notify
		}
		d.mu.Unlock()
	})
	return d.closeErr
}

// lockDisk locks d and returns nil while d is on disk; once it fell back
// to memory, it returns that Memory with d unlocked.
func (d *Disk) lockDisk() *Memory {
	d.mu.Lock()
	if m := d.fallback; m != nil {
		d.mu.Unlock()
		return m
	}
	return nil
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

// countOp counts an operation the next commit carries and starts that
// commit early when enough have gathered; d.mu is held.
func (d *Disk) countOp() {
	d.ops++
	if d.ops >= flushOps {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
}
