package spool

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// A frame is what one commit appends to the log: one write, one fdatasync.
// Its checksum covers it whole, so a commit is on disk entirely or not at
// all (a torn last frame is discarded when the store is opened).
//
//	length  4 bytes, big-endian: the length of body
//	crc     4 bytes: CRC-32C of length and body
//	body    1 byte of flags (bit 0: deflated, then the length of the
//	        entries as a uvarint), then the entries
//
// Entries, each a kind byte and fields (uvarints unless said otherwise):
//
//	'R' a record: ID, time (varint, Unix ns), seq, flags byte (QoS in
//	    bits 0-1, retain in bit 2), len+topic, len+seq key, len+payload
//	'S' the state of the records: head (every ID below it is gone), the
//	    count of acked IDs above it, then each as its distance from head
//	'L' seq leases: a count, then per key len+key and the last seq that
//	    may have been published (the next run continues above it)
//	'C' a clean close: the leases of this frame are the exact last seqs
//
// Records are deflated with the frame when that saves space and the frame
// is small: readings of one commit share their topics, keys and most of
// their JSON, and what a small commit costs the disk is the pages it
// dirties.
const (
	frameHeader  = 8
	flagDeflated = 1 << 0

	entryRecord = 'R'
	entryState  = 'S'
	entryLeases = 'L'
	entryClosed = 'C'

	// maxFrameBody bounds a frame read back, so that a corrupt length can
	// never cause a large allocation. Commits are sliced well below it.
	maxFrameBody = 64 << 20
	// Bodies from minDeflate to maxDeflate bytes are deflated. A small
	// commit costs the disk a page however few bytes it adds, so what
	// deflating saves there is most of its cost; a large one (a high rate
	// with the broker away or slow) spreads the pages over many readings,
	// and deflating it would cost CPU where CPU is short.
	minDeflate = 256
	maxDeflate = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// frameContent is what a frame says.
type frameContent struct {
	recs     []Record
	hasState bool
	head     uint64
	acked    []uint64 // IDs above head that are gone too
	leases   []leaseEntry
	closed   bool
}

type leaseEntry struct {
	key string
	seq uint64
}

// frameWriter builds frames; its buffers are reused from frame to frame.
type frameWriter struct {
	raw  []byte
	out  []byte
	zbuf bytes.Buffer
	zw   *flate.Writer
}

func (w *frameWriter) reset() { w.raw = append(w.raw[:0], 0) } // the flags byte

func (w *frameWriter) record(r *Record) {
	b := append(w.raw, entryRecord)
	b = binary.AppendUvarint(b, r.ID)
	b = binary.AppendVarint(b, r.Time)
	b = binary.AppendUvarint(b, r.Seq)
	flags := r.QoS & 3
	if r.Retain {
		flags |= 1 << 2
	}
	b = append(b, flags)
	b = appendString(b, r.Topic)
	b = appendString(b, r.SeqKey)
	b = binary.AppendUvarint(b, uint64(len(r.Payload)))
	w.raw = append(b, r.Payload...)
}

func (w *frameWriter) state(head uint64, acked []uint64) {
	b := append(w.raw, entryState)
	b = binary.AppendUvarint(b, head)
	b = binary.AppendUvarint(b, uint64(len(acked)))
	for _, id := range acked {
		b = binary.AppendUvarint(b, id-head)
	}
	w.raw = b
}

func (w *frameWriter) leases(ls []leaseEntry) {
	if len(ls) == 0 {
		return
	}
	b := append(w.raw, entryLeases)
	b = binary.AppendUvarint(b, uint64(len(ls)))
	for _, l := range ls {
		b = appendString(b, l.key)
		b = binary.AppendUvarint(b, l.seq)
	}
	w.raw = b
}

func (w *frameWriter) closed() { w.raw = append(w.raw, entryClosed) }

// empty reports whether no entry was added since reset.
func (w *frameWriter) empty() bool { return len(w.raw) <= 1 }

// finish returns the frame: header and body, deflated when that is
// smaller. The result is valid until the next reset.
func (w *frameWriter) finish() []byte {
	w.out = w.appendTo(w.out[:0])
	return w.out
}

// appendTo appends the frame to dst.
func (w *frameWriter) appendTo(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeader)...)
	if z := w.deflate(); z != nil {
		dst = append(dst, flagDeflated)
		dst = binary.AppendUvarint(dst, uint64(len(w.raw)-1))
		dst = append(dst, z...)
	} else {
		dst = append(dst, w.raw...)
	}
	out := dst[start:]
	body := out[frameHeader:]
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	binary.BigEndian.PutUint32(out[4:], frameCRC(out[:4], body))
	return dst
}

// deflate returns the entries deflated, or nil when that does not pay.
func (w *frameWriter) deflate() []byte {
	p := w.raw[1:]
	if len(p) < minDeflate || len(p) > maxDeflate {
		return nil
	}
	w.zbuf.Reset()
	if w.zw == nil {
		w.zw, _ = flate.NewWriter(&w.zbuf, flate.BestSpeed) // the level is valid
	} else {
		w.zw.Reset(&w.zbuf)
	}
	w.zw.Write(p) // a bytes.Buffer does not fail
	w.zw.Close()
	if w.zbuf.Len() >= len(p) {
		return nil
	}
	return w.zbuf.Bytes()
}

func frameCRC(length, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(length, castagnoli), castagnoli, body)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errShortFrame = errors.New("frame truncated")

// frameLen validates a frame header and returns the length of its body.
func frameLen(hdr []byte) (int, error) {
	if len(hdr) < frameHeader {
		return 0, errShortFrame
	}
	n := binary.BigEndian.Uint32(hdr)
	if n == 0 || n > maxFrameBody {
		return 0, fmt.Errorf("frame length %d", n)
	}
	return int(n), nil
}

// checkFrame verifies the checksum of a whole frame (header and body).
func checkFrame(frame []byte) error {
	n, err := frameLen(frame)
	if err != nil {
		return err
	}
	if len(frame) != frameHeader+n {
		return errShortFrame
	}
	if got, want := frameCRC(frame[:4], frame[frameHeader:]), binary.BigEndian.Uint32(frame[4:]); got != want {
		return fmt.Errorf("frame checksum %08x, want %08x", got, want)
	}
	return nil
}

// decodeFrame decodes a checked frame's body. Every length is checked
// against what is left before use; records' payloads point into the
// decoded body, which is never modified.
func decodeFrame(body []byte) (frameContent, error) {
	var c frameContent
	if len(body) == 0 {
		return c, errShortFrame
	}
	flags, b := body[0], body[1:]
	if flags&^flagDeflated != 0 {
		return c, fmt.Errorf("frame flags %#x unknown", flags)
	}
	if flags&flagDeflated != 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > maxFrameBody {
			return c, errors.New("inflating frame: bad length")
		}
		var err error
		if b, err = inflate(b[k:], int(n)); err != nil {
			return c, err
		}
	}
	d := decoder{b: b}
	var lastID uint64
	strs := map[string]string{} // topics and keys repeat: one string each
	intern := func(p []byte) string {
		if s, ok := strs[string(p)]; ok {
			return s
		}
		s := string(p)
		strs[s] = s
		return s
	}
	for len(d.b) > 0 && d.err == nil {
		kind := d.byte()
		switch kind {
		case entryRecord:
			var r Record
			r.ID = d.uvarint()
			r.Time = d.varint()
			r.Seq = d.uvarint()
			f := d.byte()
			if f&^7 != 0 || f&3 > 2 {
				return c, fmt.Errorf("record flags %#x", f)
			}
			r.QoS, r.Retain = f&3, f&4 != 0
			r.Topic = intern(d.bytes())
			r.SeqKey = intern(d.bytes())
			if p := d.bytes(); len(p) > 0 {
				r.Payload = p[:len(p):len(p)]
			}
			if d.err == nil && (r.ID == 0 || r.ID <= lastID) {
				return c, fmt.Errorf("record %d follows %d", r.ID, lastID)
			}
			lastID = r.ID
			c.recs = append(c.recs, r)
		case entryState:
			c.hasState = true
			c.head = d.uvarint()
			n := d.count()
			c.acked = c.acked[:0]
			for range n {
				c.acked = append(c.acked, c.head+d.uvarint())
			}
		case entryLeases:
			n := d.count()
			for range n {
				key := intern(d.bytes())
				c.leases = append(c.leases, leaseEntry{key: key, seq: d.uvarint()})
			}
		case entryClosed:
			c.closed = true
		default:
			if d.err == nil {
				return c, fmt.Errorf("frame entry %#x unknown", kind)
			}
		}
	}
	return c, d.err
}

// inflaters are flate readers to reuse: each holds tens of KB of tables.
var inflaters sync.Pool

// inflate returns b inflated, which must make exactly n bytes.
func inflate(b []byte, n int) ([]byte, error) {
	zr, _ := inflaters.Get().(io.ReadCloser)
	if zr == nil {
		zr = flate.NewReader(bytes.NewReader(b))
	} else if err := zr.(flate.Resetter).Reset(bytes.NewReader(b), nil); err != nil {
		return nil, err
	}
	defer inflaters.Put(zr)
	out := make([]byte, n)
	if _, err := io.ReadFull(zr, out); err != nil {
		return nil, fmt.Errorf("inflating frame: %w", err)
	}
	if k, err := zr.Read(make([]byte, 1)); k != 0 || err != io.EOF {
		return nil, errors.New("inflating frame: longer than it says")
	}
	return out, nil
}

// decoder reads fields, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail(errShortFrame)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad uvarint in frame"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errors.New("bad varint in frame"))
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a count of entries that each take at least one byte.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("count %d exceeds the frame", n))
		return 0
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail(fmt.Errorf("length %d exceeds the frame", n))
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}
