package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The on-disk form of a Record, all integers big-endian:
//
//	version   1 byte (recordVersion)
//	flags     1 byte (bit 0: retain; the other bits must be 0)
//	qos       1 byte (0, 1 or 2)
//	id, time, seq            8 bytes each
//	len(topic), len(seqKey), len(payload)   4 bytes each
//	topic, seqKey, payload
//	crc       4 bytes: CRC-32C of everything before it
//
// The ID is stored although it is also the key, so that a value found
// under the wrong key is caught as corruption.
const (
	recordVersion = 1
	flagRetain    = 1 << 0
	recordHeader  = 3 + 3*8 + 3*4
	recordCRC     = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord appends the stored form of r to dst.
func encodeRecord(dst []byte, r *Record) []byte {
	start := len(dst)
	var flags byte
	if r.Retain {
		flags |= flagRetain
	}
	dst = append(dst, recordVersion, flags, r.QoS)
	dst = binary.BigEndian.AppendUint64(dst, r.ID)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.Time))
	dst = binary.BigEndian.AppendUint64(dst, r.Seq)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Topic)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.SeqKey)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(r.Payload)))
	dst = append(dst, r.Topic...)
	dst = append(dst, r.SeqKey...)
	dst = append(dst, r.Payload...)
	return binary.BigEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// recordView is a validated stored record whose byte fields still point
// into the buffer it was parsed from: reading sizes and times this way
// allocates nothing.
type recordView struct {
	id, seq                uint64
	time                   int64
	qos                    byte
	retain                 bool
	topic, seqKey, payload []byte
}

// size is Record.Size of the record.
func (v *recordView) size() int64 {
	return int64(len(v.topic)+len(v.seqKey)+len(v.payload)) + recordOverhead
}

var errShortRecord = errors.New("record truncated")

// parseRecord validates b completely (layout, lengths, checksum) without
// copying it. The lengths are checked against len(b) before use, so a
// corrupt length can never cause a large allocation.
func parseRecord(b []byte) (recordView, error) {
	var v recordView
	if len(b) < recordHeader+recordCRC {
		return v, errShortRecord
	}
	if b[0] != recordVersion {
		return v, fmt.Errorf("record version %d, want %d", b[0], recordVersion)
	}
	if b[1]&^flagRetain != 0 {
		return v, fmt.Errorf("record flags %#x unknown", b[1])
	}
	if b[2] > 2 {
		return v, fmt.Errorf("record qos %d", b[2])
	}
	v.retain = b[1]&flagRetain != 0
	v.qos = b[2]
	v.id = binary.BigEndian.Uint64(b[3:])
	v.time = int64(binary.BigEndian.Uint64(b[11:]))
	v.seq = binary.BigEndian.Uint64(b[19:])
	lt := uint64(binary.BigEndian.Uint32(b[27:]))
	lk := uint64(binary.BigEndian.Uint32(b[31:]))
	lp := uint64(binary.BigEndian.Uint32(b[35:]))
	if want := recordHeader + lt + lk + lp + recordCRC; uint64(len(b)) != want {
		return v, fmt.Errorf("record is %d bytes, its lengths say %d", len(b), want)
	}
	body := b[recordHeader : len(b)-recordCRC]
	v.topic, body = body[:lt:lt], body[lt:]
	v.seqKey, body = body[:lk:lk], body[lk:]
	v.payload = body[:lp:lp]
	sum := binary.BigEndian.Uint32(b[len(b)-recordCRC:])
	if got := crc32.Checksum(b[:len(b)-recordCRC], castagnoli); got != sum {
		return v, fmt.Errorf("record checksum %08x, want %08x", got, sum)
	}
	return v, nil
}

// record copies the view into a Record that owns its memory.
func (v *recordView) record() Record {
	r := Record{
		ID:     v.id,
		Topic:  string(v.topic),
		QoS:    v.qos,
		Retain: v.retain,
		Time:   v.time,
		SeqKey: string(v.seqKey),
		Seq:    v.seq,
	}
	if len(v.payload) > 0 {
		r.Payload = append([]byte(nil), v.payload...)
	}
	return r
}

// decodeRecord is the inverse of encodeRecord; any malformed input is an
// error.
func decodeRecord(b []byte) (Record, error) {
	v, err := parseRecord(b)
	if err != nil {
		return Record{}, err
	}
	return v.record(), nil
}
