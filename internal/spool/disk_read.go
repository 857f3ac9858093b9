package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketRecords = []byte("records")
	bucketMeta    = []byte("meta")
	bucketSeqs    = []byte("seqs")
	keyNextID     = []byte("next-id")
	// keyRunning is present while a gatewayd has the store open; Close
	// deletes it. Found at open, it means the last run ended in a crash.
	keyRunning = []byte("running")
)

// SeqSkipAfterCrash is how far every sequence number jumps after a run
// that did not close the store. Seqs are committed with the records every
// SyncInterval, but readings are published before their commit, so a crash
// can leave seqs published that the store does not know: continuing from
// the stored value would reuse them for other readings. The jump covers
// what a series can advance between two commits (at most 100 readings a
// second for the shortest interval) with a large margin: a subscriber sees
// a gap where readings may have been lost, never a seq used twice.
const SeqSkipAfterCrash = 1000

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

func keyID(k []byte) (uint64, error) {
	if len(k) != 8 {
		return 0, fmt.Errorf("record key %x is not an ID", k)
	}
	return binary.BigEndian.Uint64(k), nil
}

// guard runs fn and turns a panic into an error: bbolt panics on some
// corrupt pages, and with SetPanicOnFault so does a failed read of the
// memory-mapped file (an I/O error, a file truncated under it), which
// would otherwise kill the process.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bbolt panicked: %v", p)
		}
	}()
	return fn()
}

// view runs fn on the records bucket in a read transaction, under guard.
func (d *Disk) view(fn func(b *bolt.Bucket) error) error {
	return guard(func() error {
		return d.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			if b == nil {
				return errors.New("records bucket missing")
			}
			return fn(b)
		})
	})
}

// eachLive calls f with the ID and encoding of every committed record not
// yet acked, from ID start on, in ID order, until f returns false or an
// error; d.mu is held.
func (d *Disk) eachLive(start uint64, f func(id uint64, v []byte) (bool, error)) error {
	return d.view(func(b *bolt.Bucket) error {
		c := b.Cursor()
		for k, v := c.Seek(idKey(start)); k != nil; k, v = c.Next() {
			id, err := keyID(k)
			if err != nil || id >= d.diskNext {
				return err
			}
			if d.isAcked(id) {
				continue
			}
			if more, err := f(id, v); err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// peekDisk appends to buf the live committed records from ID start on;
// d.mu is held.
func (d *Disk) peekDisk(start uint64, buf []Record) ([]Record, error) {
	if len(buf) == cap(buf) {
		return buf, nil
	}
	err := d.eachLive(start, func(id uint64, v []byte) (bool, error) {
		rv, err := parseRecord(v)
		if err != nil {
			return false, fmt.Errorf("reading buffer record %d: %w", id, err)
		}
		buf = append(buf, rv.record())
		return len(buf) < cap(buf), nil
	})
	return buf, err
}

// sizeOnDisk reads the size of committed record id; ok is false when it is
// not there. d.mu is held.
func (d *Disk) sizeOnDisk(id uint64) (size int64, ok bool, err error) {
	err = d.view(func(b *bolt.Bucket) error {
		v := b.Get(idKey(id))
		if v == nil {
			return nil
		}
		rv, err := parseRecord(v)
		if err != nil {
			return fmt.Errorf("reading buffer record %d: %w", id, err)
		}
		size, ok = rv.size(), true
		return nil
	})
	return size, ok, err
}

// refill loads the head cache with the oldest live committed records from
// head on; d.mu is held.
func (d *Disk) refill() error {
	cache, end := d.cacheBuf[:0], d.diskNext
	err := d.eachLive(d.head, func(id uint64, v []byte) (bool, error) {
		if len(cache) == cap(cache) {
			end = id
			return false, nil
		}
		rv, err := parseRecord(v)
		if err != nil {
			return false, fmt.Errorf("reading buffer record %d: %w", id, err)
		}
		cache = append(cache, headEntry{id: id, time: rv.time, size: rv.size()})
		return true, nil
	})
	if err != nil {
		return err
	}
	d.cache, d.cacheEnd = cache, end
	return nil
}

// compactCache moves the live entries of the head cache to the front of
// its array, to make room at the end; d.mu is held.
func (d *Disk) compactCache() {
	n := 0
	for _, c := range d.cache {
		if c.id >= d.head && !d.isAcked(c.id) {
			d.cacheBuf[n] = c
			n++
		}
	}
	d.cache = d.cacheBuf[:n]
}
