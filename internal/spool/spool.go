// Package spool is the buffer where readings wait until the broker has
// acknowledged them: bounded, oldest dropped first, in memory, or with
// buffer.dir in memory and, for what waits longer than a second, in a log
// on disk, so that it survives restarts and crashes (docs/BUFFER.md).
//
// A record leaves the spool only through Ack (the broker's PUBACK) or by
// being dropped as the oldest when the spool is full; Append reports the
// drops so that the caller can count them.
package spool

import (
	"log/slog"
	"os"
	"time"
)

// Record is one reading waiting for the broker.
type Record struct {
	// ID is assigned by Append: strictly increasing; after a restart of a
	// durable spool, above every ID on disk.
	ID      uint64
	Topic   string
	Payload []byte // never modified after Append
	QoS     byte
	Retain  bool
	Time    int64 // the reading's time, Unix nanoseconds

	// SeqKey ("sensor/quantity") and Seq are the sequence number this
	// record carries; a durable spool leases seqs on disk before Peek
	// gives them out, so that numbering continues after a restart without
	// reuse. SeqKey may be empty.
	SeqKey string
	Seq    uint64
}

// recordOverhead approximates the bytes a record costs beyond its topic and
// payload, so that max_bytes bounds memory and disk honestly.
const recordOverhead = 48

// Size is what the record counts against max_bytes.
func (r *Record) Size() int64 {
	return int64(len(r.Topic)+len(r.Payload)+len(r.SeqKey)) + recordOverhead
}

// Queue is the spool. All methods are safe for concurrent use.
type Queue interface {
	// Append adds r at the tail and sets r.ID. When the spool then holds
	// more than MaxMessages records or MaxBytes bytes, the oldest records
	// are dropped, and Append returns how many.
	Append(r *Record) (dropped int)
	// Peek appends to buf[:0] up to cap(buf) records whose ID is greater
	// than after, oldest first, and returns it. It does not remove them.
	// A durable spool gives out no record whose seq is not leased on disk
	// yet, nor any after it: Notify tells when that changed.
	Peek(after uint64, buf []Record) []Record
	// Ack removes the record with this ID, the broker having acknowledged
	// it. It reports whether the record was still there (it may have been
	// dropped as the oldest meanwhile, or acked before).
	Ack(id uint64) bool
	// Len is the number of records held.
	Len() int
	// Bytes is what the records held count against MaxBytes.
	Bytes() int64
	// Oldest is the reading time of the oldest record held.
	Oldest() (time.Time, bool)
	// Seqs returns the last sequence number of every key known to the
	// spool: for a durable one, from before a restart the last one after a
	// clean close, the end of its lease after a crash.
	Seqs() map[string]uint64
	// Notify receives a value after Appends; it has a buffer of one, so a
	// reader that was busy still sees that something came.
	Notify() <-chan struct{}
	// Durable reports whether records are currently kept on disk.
	Durable() bool
	// Close flushes what a durable spool holds to disk and releases it.
	Close() error
}

// Options configures Open.
type Options struct {
	MaxMessages int
	MaxBytes    int64
	// Dir, when set, keeps the spool on disk in this directory.
	Dir string
	// SpillAfter is how long a durable spool keeps a record only in memory
	// while it waits for its acknowledgement; 0 means DefaultSpillAfter
	// (1 s). A crash loses at most the records of about this long.
	SpillAfter time.Duration
	Logger     *slog.Logger

	// OnDiskError is called when the disk store fails (full disk, I/O
	// error): the spool then keeps new records in memory and logs it.
	OnDiskError func(err error)
	// OnCorrupt is called when the store found at start could not be read
	// and was moved aside to movedTo; the spool starts afresh.
	OnCorrupt func(movedTo string)
	// OnCommit is called after each commit to disk (one fdatasync).
	OnCommit func()

	// For tests: how segments are opened, a failure to inject into
	// appends, and SeqLease.
	openFile   func(name string, flag int, perm os.FileMode) (*os.File, error)
	appendFail func() error
	seqLease   time.Duration
}

func (o *Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// Open returns the spool that opts describe: in memory, or on disk in
// opts.Dir. A durable spool's errors name the directory; the one that says
// it "is in use by another gatewayd" means another process holds it.
func Open(opts Options) (Queue, error) {
	if opts.Dir == "" {
		return NewMemory(opts.MaxMessages, opts.MaxBytes, 1), nil
	}
	return openDisk(opts)
}
