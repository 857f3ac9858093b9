package spool

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

func sameRecord(a, b Record) bool {
	return a.ID == b.ID && a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) &&
		a.QoS == b.QoS && a.Retain == b.Retain && a.Time == b.Time && a.SeqKey == b.SeqKey && a.Seq == b.Seq
}

var recordSeeds = []Record{
	{ID: 1, Topic: "plant/boiler/temp", Payload: []byte(`{"v":21.5}`), QoS: 1, Time: 1764313445000000000, SeqKey: "boiler/temp", Seq: 7},
	{ID: 2},
	{ID: 1<<64 - 1, Topic: "t", QoS: 2, Retain: true, Time: -1, Seq: 1<<64 - 1},
}

// seedFrame builds a frame with every kind of entry; big makes it large
// enough to be deflated.
func seedFrame(big bool) []byte {
	var w frameWriter
	w.reset()
	for i := range recordSeeds[:2] {
		w.record(&recordSeeds[i])
	}
	if big {
		for i := range 20 {
			w.record(&Record{ID: uint64(10 + i), Topic: "gatewayd/gw/s1/temperature", SeqKey: "s1/temperature", QoS: 1,
				Payload: fmt.Appendf(nil, `{"sensor":"s1","quantity":"temperature","value":21.%d,"seq":%d}`, i, i), Time: int64(i), Seq: uint64(i)})
		}
	}
	w.record(&recordSeeds[2])
	w.leases([]leaseEntry{{"boiler/temp", 17}, {"", 0}})
	w.state(5, []uint64{7, 9})
	w.closed()
	return bytes.Clone(w.finish())
}

func TestFrameRoundTrip(t *testing.T) {
	for _, big := range []bool{false, true} {
		fr := seedFrame(big)
		if err := checkFrame(fr); err != nil {
			t.Fatal(err)
		}
		if deflated := fr[frameHeader]&flagDeflated != 0; deflated != big {
			t.Fatalf("big %v: deflated %v", big, deflated)
		}
		c, err := decodeFrame(fr[frameHeader:])
		if err != nil {
			t.Fatal(err)
		}
		if !sameRecord(c.recs[0], recordSeeds[0]) || !sameRecord(c.recs[1], recordSeeds[1]) || !sameRecord(c.recs[len(c.recs)-1], recordSeeds[2]) {
			t.Fatalf("records: %+v", c.recs)
		}
		if got := fmt.Sprint(c.hasState, c.head, c.acked, c.leases, c.closed); got != "true 5 [7 9] [{boiler/temp 17} { 0}] true" {
			t.Fatalf("decoded %s", got)
		}
	}
}

func TestFrameRejects(t *testing.T) {
	good := seedFrame(false)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// reseal recomputes the header, so that the check under test is the
	// one that fails.
	reseal := func(b []byte) []byte {
		binary.BigEndian.PutUint32(b, uint32(len(b)-frameHeader))
		binary.BigEndian.PutUint32(b[4:], frameCRC(b[:4], b[frameHeader:]))
		return b
	}
	tests := []struct {
		name, want string
		in         []byte
	}{
		{"empty", "truncated", nil},
		{"header only", "truncated", good[:frameHeader]},
		{"cut short", "truncated", good[:len(good)-1]},
		{"zero length", "frame length 0", reseal(bytes.Clone(good[:frameHeader]))},
		{"huge length", "frame length", mutate(func(b []byte) []byte { binary.BigEndian.PutUint32(b, 1<<31); return b })},
		{"bad checksum", "checksum", mutate(func(b []byte) []byte { b[5] ^= 1; return b })},
		{"flipped bit", "checksum", mutate(func(b []byte) []byte { b[len(b)-6] ^= 0x10; return b })},
		{"flags", "flags", mutate(func(b []byte) []byte { b[frameHeader] = 0x80; return reseal(b) })},
		{"not deflated", "inflating", mutate(func(b []byte) []byte { b[frameHeader] = flagDeflated; return reseal(b) })},
		{"inflates longer than it says", "longer", func() []byte {
			b := bytes.Clone(seedFrame(true))
			b[frameHeader+1]-- // the length, 1 less
			return reseal(b)
		}()},
		{"entry kind", "unknown", reseal(append(bytes.Clone(good), 'X'))},
		{"trailing partial entry", "bad uvarint", reseal(append(bytes.Clone(good), entryRecord))},
		{"huge count", "exceeds", reseal(append(append(bytes.Clone(good), entryLeases), 0xff, 0xff, 0x03))},
		{"record IDs not increasing", "follows", reseal(append(append(bytes.Clone(good), entryRecord), 1, 0, 0, 0, 0, 0, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFrame(tt.in)
			if err == nil {
				_, err = decodeFrame(tt.in[frameHeader:])
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// FuzzDecodeFrame: a frame body from a damaged disk never crashes the
// decoder or makes it allocate beyond its size, and what decodes encodes
// back to a frame that decodes the same.
func FuzzDecodeFrame(f *testing.F) {
	for _, big := range []bool{false, true} {
		f.Add(seedFrame(big)[frameHeader:])
	}
	f.Add([]byte{0, entryRecord, 1})
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeFrame(body)
		if err != nil {
			return
		}
		var w frameWriter
		w.reset()
		for i := range c.recs {
			w.record(&c.recs[i])
		}
		w.leases(c.leases)
		if c.hasState {
			w.state(c.head, c.acked)
		}
		if c.closed {
			w.closed()
		}
		again, err := decodeFrame(w.finish()[frameHeader:])
		if err != nil || len(again.recs) != len(c.recs) || fmt.Sprint(again.leases, again.head, again.acked, again.closed) != fmt.Sprint(c.leases, c.head, c.acked, c.closed) {
			t.Fatalf("re-encoded frame decodes to %+v, %v; was %+v", again, err, c)
		}
		for i := range c.recs {
			if !sameRecord(again.recs[i], c.recs[i]) {
				t.Fatalf("record %d: %+v, was %+v", i, again.recs[i], c.recs[i])
			}
		}
	})
}
