package spool

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// flusherBufs are reused from commit to commit by the flusher.
type flusherBufs struct {
	recs   []Record
	leases []leaseEntry
	acked  []uint64
	check  []leaseEntry // for a checkpoint
	batch  []byte       // the frames of a commit
	spans  []frameSpan
}

// run is the flusher: it sleeps until something is due (a lease, records
// unacknowledged for SpillAfter, the state of a draining backlog), commits
// it, and commits everything at Close.
func (d *Disk) run() {
	defer close(d.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		wait := d.due()
		d.wakeAt = math.MaxInt64
		if wait >= 0 {
			d.wakeAt = d.clock() + int64(wait)
		}
		d.mu.Unlock()
		if wait == 0 {
			d.flush(due)
			continue
		}
		if wait > 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-d.quit:
			d.finish()
			return
		case <-d.kick:
		case <-timer.C:
		}
	}
}

// due is how long until the flusher has work: 0 now, < 0 none; d.mu is
// held.
func (d *Disk) due() time.Duration {
	if d.wantLease && d.leasesOK {
		return 0
	}
	if !d.durable {
		return -1
	}
	now := d.clock()
	wait := time.Duration(-1)
	at := func(t int64) {
		if w := time.Duration(max(0, t-now)); wait < 0 || w < wait {
			wait = w
		}
	}
	if d.memBytes >= earlyBytes {
		return 0
	}
	for i := range d.mem.len() {
		if e := d.mem.at(i); !e.acked && !e.written {
			at(e.at + int64(d.spillAfter))
			break
		}
	}
	if d.stateDirty {
		if len(d.frames) == 0 {
			return 0 // the backlog is gone: say so, and free its segments
		}
		at(d.stateAt.Add(stateEvery).Sub(d.epoch).Nanoseconds())
	}
	return wait
}

// dropSegments deletes the oldest segments once no frame with live
// records is in them; d.mu and flushMu are held (readers use the files
// under d.mu, commits append to the list of segments under flushMu).
func (d *Disk) dropSegments() {
	for len(d.w.segs) > 1 {
		s := d.w.segs[0]
		for len(d.frames) > 0 && d.frames[0].live == 0 {
			d.frames = d.frames[1:]
		}
		if len(d.frames) > 0 && d.frames[0].seg == s {
			return
		}
		for i := range d.cache {
			if d.cache[i].seg == s {
				d.cache[i] = decoded{}
			}
		}
		if err := d.w.drop(); err != nil {
			d.log.Warn("deleting a used buffer segment failed", "path", s.path, "err", err)
		}
	}
}

// What a flush commits.
type flushKind int

const (
	due   flushKind = iota // what is due: leases, records SpillAfter old, the state
	all                    // also every record waiting in memory (for tests)
	final                  // all, and the exact seqs with the clean-close mark
)

// flush commits what kind says, in slices when a burst needs them.
func (d *Disk) flush(kind flushKind) error {
	d.flushMu.Lock() // tests call flush too
	defer d.flushMu.Unlock()
	var first error
	for {
		more, err := d.commit(kind)
		if first == nil {
			first = err
		}
		if !more {
			return first
		}
	}
}

// commit appends what is due to the log with one write and one
// fdatasync: the records waiting in memory (when the oldest is due, or
// for kind all and final), in frames of at most maxBatch records and
// maxBatchBytes; the leases due; the state of the committed records; and
// on the final commit the exact seqs with the clean-close mark. It reports
// whether another commit should follow right away (more than earlyBytes
// of records waited).
func (d *Disk) commit(kind flushKind) (more bool, err error) {
	f := &d.fl
	d.mu.Lock()
	now := d.clock()
	// The records: all that wait in memory, once the oldest is due.
	f.recs = f.recs[:0]
	n, size, sliced := 0, int64(0), false
	if d.durable && (kind != due || d.recordsDue(now)) {
		for ; n < d.mem.len(); n++ {
			e := d.mem.at(n)
			if e.acked {
				continue
			}
			if size >= earlyBytes {
				sliced = true
				break
			}
			e.written = true
			f.recs = append(f.recs, e.rec)
			size += e.rec.Size()
			d.memBytes -= e.rec.Size()
		}
	}
	last := kind == final && !sliced
	end := d.memStart + uint64(n)
	f.leases = d.renewals(f.leases[:0])
	if last {
		f.leases = d.allLeases(f.leases[:0], true)
	}
	withState := d.stateDirty || last
	f.acked = f.acked[:0]
	head := d.head
	if withState {
		for id := range d.acked {
			f.acked = append(f.acked, id)
		}
		slices.Sort(f.acked)
		d.stateDirty = false
	}
	var checkpoint []byte
	if len(d.w.segs) == 0 || d.w.active().size >= segTarget {
		var cw frameWriter
		cw.reset()
		cw.state(head, f.acked)
		f.check = d.allLeases(f.check[:0], false)
		cw.leases(f.check)
		checkpoint = cw.finish()
	}
	d.mu.Unlock()

	// The frames; leases, state and the close mark go in the last.
	w := &d.fw
	f.batch, f.spans = f.batch[:0], f.spans[:0]
	for i := 0; ; {
		w.reset()
		j, sz := i, int64(0)
		for ; j < len(f.recs) && j-i < maxBatch && sz < maxBatchBytes; j++ {
			w.record(&f.recs[j])
			sz += f.recs[j].Size()
		}
		if j == len(f.recs) {
			w.leases(f.leases)
			if withState {
				w.state(head, f.acked)
			}
			if last {
				w.closed()
			}
		}
		if !w.empty() {
			off := len(f.batch)
			f.batch = w.appendTo(f.batch)
			f.spans = append(f.spans, frameSpan{off: off, n: len(f.batch) - off, from: i, to: j})
		}
		if i = j; i == len(f.recs) {
			break
		}
	}
	if checkpoint != nil {
		err = d.w.roll(checkpoint)
	}
	if err == nil && len(f.batch) > 0 {
		err = d.w.append(f.batch)
	}

	d.mu.Lock()
	defer d.unlock()
	if err == nil && (len(f.batch) > 0 || checkpoint != nil) {
		if d.onCommit != nil {
			d.after = append(d.after, d.onCommit)
		}
		if withState {
			d.stateAt = d.epoch.Add(time.Duration(now))
		}
		d.committed(end)
		d.leased(f.leases)
		d.dropSegments()
		select {
		case d.notify <- struct{}{}: // the gate may have opened
		default:
		}
	}
	clear(f.recs) // let go of the payloads
	if cap(f.batch) > 4*maxBatchBytes || cap(f.recs) > 4*maxBatch || cap(w.raw) > 2*maxBatchBytes {
		f.batch, f.recs, w.raw = nil, nil, nil // a burst: do not keep its buffers
	}
	if err != nil {
		return d.failed(err, end, withState), err
	}
	return sliced, nil
}

// frameSpan is one frame of a commit: where it is in the batch written,
// and which of the commit's records it holds.
type frameSpan struct {
	off, n   int
	from, to int
}

// recordsDue reports whether the records waiting in memory should be
// committed now; d.mu is held.
func (d *Disk) recordsDue(now int64) bool {
	if d.memBytes >= earlyBytes {
		return true
	}
	for i := range d.mem.len() {
		if e := d.mem.at(i); !e.acked && !e.written {
			return now >= e.at+int64(d.spillAfter)
		}
	}
	return false
}

// committed records that the records of the commit just appended (its
// frames in d.fl.spans, IDs up to end) are on disk; d.mu is held. Those
// acked meanwhile are on disk now and go with the next state entry; the
// others are live in their frames.
func (d *Disk) committed(end uint64) {
	f := &d.fl
	s := d.w.active()
	base := s.size - int64(len(f.batch))
	for _, sp := range f.spans {
		if sp.to == sp.from {
			continue
		}
		fr := frameRef{seg: s, off: base + int64(sp.off), n: sp.n, first: f.recs[sp.from].ID, last: f.recs[sp.to-1].ID}
		for id := max(fr.first, d.memStart); id <= fr.last; id++ {
			e := d.mem.at(int(id - d.memStart))
			switch {
			case !e.written:
			case e.acked:
				if id >= d.head {
					d.acked[id] = struct{}{}
					d.stateDirty = true
				}
			default:
				d.written++
				fr.live++
				fr.bytes += e.rec.Size()
			}
		}
		if fr.live > 0 {
			d.frames = append(d.frames, fr)
		}
	}
	if end > d.memStart {
		d.mem.pop(int(end - d.memStart))
		d.memStart = end
	}
	d.front() // acked entries may lead mem now
}

// failed handles a commit that failed; d.mu is held. The first failure
// stops the writing of records (they stay in memory) and the commit is
// tried again without them; a failure to write leases after that stops
// the gate: readings keep flowing, with seqs that no lease covers. It
// reports whether to commit again.
func (d *Disk) failed(err error, end uint64, withState bool) bool {
	for id := d.memStart; id < end; id++ {
		if e := d.mem.at(int(id - d.memStart)); e.written {
			e.written = false
			if !e.acked {
				d.memBytes += e.rec.Size()
			}
		}
	}
	if withState {
		d.stateDirty = true
	}
	for _, l := range d.leases {
		if l.asked != 0 {
			l.asked, l.want = 0, true
			d.wantLease = true
		}
	}
	if d.durable {
		d.fallBack(err)
		return d.wantLease
	}
	if d.leasesOK {
		d.leasesOK = false
		d.log.Error("buffer disk cannot take the seq leases either; seqs are published without them, and after the next start they may repeat numbers of this run",
			"dir", d.dir, "err", err)
		if cb := d.onDiskError; cb != nil {
			d.after = append(d.after, func() { cb(err) })
		}
		d.advanceGate()
		select {
		case d.notify <- struct{}{}:
		default:
		}
	}
	return false
}

// fallBack stops the writing of records after the disk failed with cause;
// d.mu is held. New records stay in memory; those on disk are still read
// from there; leases are still written while the disk takes them.
func (d *Disk) fallBack(cause error) {
	if !d.durable {
		return
	}
	d.durable = false
	d.log.Error("buffer disk failed; keeping new readings in memory from now on", "dir", d.dir, "err", cause)
	if cb := d.onDiskError; cb != nil {
		d.after = append(d.after, func() { cb(cause) })
	}
}

// finish is the last commit, at Close; the spool is an empty memory spool
// after it.
func (d *Disk) finish() {
	d.mu.Lock()
	durable := d.durable
	d.mu.Unlock()
	err := d.flush(final)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case err != nil && durable:
		err = fmt.Errorf("buffer.dir %s: last commit failed, %d records were only in memory: %w", d.dir, d.live, err)
	case err != nil:
		err = fmt.Errorf("buffer.dir %s: writing the exact seqs at close: %w", d.dir, err)
	}
	d.closeErr = errors.Join(err, d.w.close())
	d.unlockDir()
	d.durable, d.leasesOK, d.closed = false, false, true
	d.frames, d.acked, d.cache = nil, map[uint64]struct{}{}, [cacheFrames]decoded{}
	d.mem = pending{}
	d.head, d.memStart, d.live, d.bytes, d.memBytes = d.nextID, d.nextID, 0, 0, 0
	d.gate = noGate
}
