package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// flusherBufs are reused from commit to commit by the flusher goroutine.
type flusherBufs struct {
	batch []Record
	dels  []uint64
	seqs  map[string]uint64
	keys  []byte
	enc   []byte
}

// run is the flusher: one commit every interval, or sooner when kicked;
// a last one when Close asks. It stops for good when the disk fails.
func (d *Disk) run() {
	defer close(d.done)
	t := time.NewTicker(d.interval)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			durable, err := d.flush()
			if err != nil {
				err = fmt.Errorf("buffer.dir %s: last commit failed, %d records were only in memory: %w",
					d.dir, d.Len(), err)
			} else if durable {
				if err = guard(func() error { return d.db.Update(endRun) }); err != nil {
					err = fmt.Errorf("buffer.dir %s: marking a clean close: %w", d.dir, err)
				}
			}
			d.closeErr = errors.Join(err, d.closeDB())
			return
		case <-t.C:
		case <-d.kick:
		}
		if durable, _ := d.flush(); !durable {
			_ = d.closeDB() // the spool is in memory now; the error was reported
			return
		}
	}
}

func (d *Disk) closeDB() error {
	if err := guard(d.db.Close); err != nil {
		return fmt.Errorf("closing %s: %w", d.db.Path(), err)
	}
	return nil
}

// flush commits the appends, acks, drops and seqs gathered until now,
// in one transaction unless a burst needs slices. It reports whether the
// spool is still on disk, and the error that made it fall back if one of
// its commits did.
func (d *Disk) flush() (durable bool, err error) {
	d.flushMu.Lock() // tests call flush too
	defer d.flushMu.Unlock()
	d.mu.Lock()
	target := d.nextID
	d.mu.Unlock()
	for {
		durable, done, err := d.flushSlice(target)
		if !durable || done {
			return durable, err
		}
	}
}

// flushSlice commits up to maxBatch records and whatever else is pending.
// It reports whether records below target are all committed now.
func (d *Disk) flushSlice(target uint64) (durable, done bool, err error) {
	d.mu.Lock()
	if d.fallback != nil {
		d.mu.Unlock()
		return false, true, nil
	}
	start, below := d.diskNext, d.head
	f := &d.fl
	n, size := 0, int64(0)
	for ; n < d.mem.len(); n++ {
		e := d.mem.at(n)
		if e.rec.ID < below || e.acked {
			continue
		}
		if len(f.batch) == maxBatch || size >= maxBatchBytes {
			break // the rest goes in the next slice
		}
		e.written = true
		f.batch = append(f.batch, e.rec)
		size += e.rec.Size()
	}
	end := start + uint64(n)
	for id := range d.acked {
		f.dels = append(f.dels, id)
	}
	seqs := d.dirty
	d.dirty, f.seqs = f.seqs, seqs
	d.ops = 0
	dropBelow := uint64(0) // keys below it go; 0: none are on disk
	if d.diskLow < min(below, start) {
		dropBelow = below
	}
	if len(f.batch) == 0 && len(f.dels) == 0 && len(seqs) == 0 && dropBelow == 0 {
		d.committed(start, end, below, nil) // nothing to write
		d.mu.Unlock()
		return true, end >= target, nil
	}
	d.mu.Unlock()

	err = d.commit(f.batch, f.dels, dropBelow, end, seqs)
	clear(f.batch) // let go of the payloads
	f.batch = f.batch[:0]
	if cap(f.batch) > flushOps { // a burst; do not keep its buffers
		f.batch, f.keys, f.enc = nil, nil, nil
	}
	clear(seqs)

	d.mu.Lock()
	defer d.unlock()
	dels := f.dels
	f.dels = f.dels[:0]
	if d.fallback != nil {
		return false, true, nil
	}
	if err != nil {
		d.fallBack(err)
		return false, true, err
	}
	d.committed(start, end, below, dels)
	return true, end >= target, nil
}

// commit writes one transaction. bbolt wants keys and values to stay valid
// until the transaction ends, hence the growing shared buffers.
func (d *Disk) commit(batch []Record, dels []uint64, dropBelow, next uint64, seqs map[string]uint64) error {
	f := &d.fl
	f.keys, f.enc = f.keys[:0], f.enc[:0]
	key := func(id uint64) []byte {
		f.keys = binary.BigEndian.AppendUint64(f.keys, id)
		return f.keys[len(f.keys)-8:]
	}
	err := guard(func() error {
		return d.db.Update(func(tx *bolt.Tx) error {
			b, mb, sb := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta), tx.Bucket(bucketSeqs)
			b.FillPercent = 0.9 // keys only ever grow at the right edge
			for _, id := range dels {
				if err := b.Delete(key(id)); err != nil {
					return err
				}
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) < dropBelow; k, _ = c.First() {
				if err := c.Delete(); err != nil {
					return err
				}
			}
			for i := range batch {
				n := len(f.enc)
				f.enc = encodeRecord(f.enc, &batch[i])
				if err := b.Put(key(batch[i].ID), f.enc[n:]); err != nil {
					return err
				}
			}
			for k, v := range seqs {
				if err := sb.Put([]byte(k), binary.BigEndian.AppendUint64(nil, v)); err != nil {
					return err
				}
			}
			return mb.Put(keyNextID, key(next))
		})
	})
	if err != nil {
		return fmt.Errorf("committing to %s: %w", d.db.Path(), err)
	}
	return nil
}

// committed records that IDs [start, end) went through a commit; d.mu is
// held. Records acked meanwhile are on disk now and must go with the next
// commit; live ones join the head cache when it reached this far.
func (d *Disk) committed(start, end, below uint64, dels []uint64) {
	d.compactCache() // the deleted may be cached; they must go first
	for _, id := range dels {
		delete(d.acked, id)
	}
	d.diskLow = max(d.diskLow, below)
	extend := max(d.cacheEnd, d.head) >= start
	if extend {
		d.cacheEnd = end
	}
	n := int(end - start)
	for i := range n {
		e := d.mem.at(i)
		switch {
		case !e.written || e.rec.ID < d.head:
		case e.acked:
			d.acked[e.rec.ID] = struct{}{}
		case extend && len(d.cache) < d.cacheMax:
			d.cache = append(d.cache, headEntry{id: e.rec.ID, time: e.rec.Time, size: e.rec.Size()})
		case extend:
			d.cacheEnd, extend = e.rec.ID, false
		}
	}
	d.mem.pop(n)
	d.diskNext = end
}

// fallBack moves everything held into a Memory spool that serves from now
// on, after the disk failed with cause; d.mu is held. It returns the
// records the bounds dropped on the way (none unless over).
func (d *Disk) fallBack(cause error) int {
	d.log.Error("buffer disk failed; keeping the buffer in memory from now on", "dir", d.dir, "err", cause)
	m := NewMemory(d.maxMsgs, d.maxBytes, d.nextID)
	m.notify = d.notify // readers already wait on this channel
	dropped := 0
	if d.head < d.diskNext {
		err := d.eachLive(d.head, func(id uint64, v []byte) (bool, error) {
			rv, err := parseRecord(v)
			if err != nil {
				d.log.Error("buffer record unreadable; lost", "id", id, "err", err)
				return true, nil
			}
			r := rv.record()
			dropped += m.adopt(&r)
			return true, nil
		})
		if err != nil {
			d.log.Error("reading the buffer back from disk failed", "dir", d.dir, "err", err)
		}
	}
	for i := range d.mem.len() {
		if e := d.mem.at(i); e.rec.ID >= d.head && !e.acked {
			dropped += m.adopt(&e.rec)
		}
	}
	m.resume(d.nextID, d.seqs)
	if lost := d.live - dropped - m.Len(); lost > 0 {
		d.log.Error("buffer records lost with the disk", "dir", d.dir, "lost", lost)
	}
	d.fallback = m
	d.mem, d.cache, d.acked = pending{}, nil, nil
	if cb := d.onDiskError; cb != nil {
		d.after = append(d.after, func() { cb(cause) })
	}
	return dropped
}
