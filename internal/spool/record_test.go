package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"strings"
	"testing"
)

func sameRecord(a, b Record) bool {
	return a.ID == b.ID && a.Topic == b.Topic && bytes.Equal(a.Payload, b.Payload) &&
		a.QoS == b.QoS && a.Retain == b.Retain && a.Time == b.Time && a.SeqKey == b.SeqKey && a.Seq == b.Seq
}

var recordSeeds = []Record{
	{},
	{ID: 1, Topic: "plant/boiler/temp", Payload: []byte(`{"v":21.5}`), QoS: 1, Time: 1764313445000000000, SeqKey: "boiler/temp", Seq: 7},
	{ID: 1<<64 - 1, Topic: "t", QoS: 2, Retain: true, Time: -1, Seq: 1<<64 - 1},
	{ID: 42, Payload: bytes.Repeat([]byte{0, 0xff}, 20)},
}

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range recordSeeds {
		enc := encodeRecord([]byte("prefix"), &r)
		got, err := decodeRecord(enc[len("prefix"):])
		if err != nil {
			t.Fatalf("decode(encode(%+v)): %v", r, err)
		}
		if !sameRecord(got, r) {
			t.Fatalf("round trip: got %+v, want %+v", got, r)
		}
		v, _ := parseRecord(enc[len("prefix"):])
		if v.size() != r.Size() {
			t.Fatalf("size %d, Record.Size %d", v.size(), r.Size())
		}
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := encodeRecord(nil, &recordSeeds[1])
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	// reseal recomputes the checksum, so that the check under test is the
	// one that fails.
	reseal := func(b []byte) []byte {
		b = b[:len(b)-recordCRC]
		return encodeRecordCRC(b)
	}
	tests := []struct {
		name, want string
		in         []byte
	}{
		{"empty", "truncated", nil},
		{"header only", "truncated", good[:recordHeader]},
		{"cut short", "lengths say", good[:len(good)-1]},
		{"trailing byte", "lengths say", append(bytes.Clone(good), 0)},
		{"bad checksum", "checksum", mutate(func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"flipped payload bit", "checksum", mutate(func(b []byte) []byte { b[len(b)-6] ^= 0x10; return b })},
		{"version", "version", mutate(func(b []byte) []byte { b[0] = 2; return reseal(b) })},
		{"flags", "flags", mutate(func(b []byte) []byte { b[1] = 0x82; return reseal(b) })},
		{"qos", "qos", mutate(func(b []byte) []byte { b[2] = 3; return reseal(b) })},
		{"huge topic length", "lengths say", mutate(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[27:], 0xffffffff)
			return reseal(b)
		})},
		{"all lengths huge", "lengths say", mutate(func(b []byte) []byte {
			for _, off := range []int{27, 31, 35} {
				binary.BigEndian.PutUint32(b[off:], 0xffffffff)
			}
			return reseal(b)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRecord(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// encodeRecordCRC appends a correct checksum to body.
func encodeRecordCRC(body []byte) []byte {
	return binary.BigEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

func FuzzDecodeRecord(f *testing.F) {
	for _, r := range recordSeeds {
		f.Add(encodeRecord(nil, &r))
	}
	f.Add([]byte{recordVersion, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err == nil {
			if again := encodeRecord(nil, &r); !bytes.Equal(again, data) {
				t.Fatalf("decoded %+v but it encodes differently", r)
			}
		}
		// The input as the fields of a record: any record round-trips.
		// Cut at 1 KiB: longer ones only reach other paths of the CRC code,
		// and minimizing such inputs stalls the fuzzer for minutes.
		if len(data) < 3 {
			return
		}
		data = data[:min(len(data), 1024)]
		var id [8]byte
		copy(id[:], data)
		third := len(data) / 3
		in := Record{
			ID:      binary.LittleEndian.Uint64(id[:]),
			Topic:   string(data[:third]),
			SeqKey:  string(data[third : 2*third]),
			Payload: data[2*third:],
			QoS:     data[0] % 3,
			Retain:  data[1]&1 == 1,
			Time:    int64(len(data)) << 40,
			Seq:     uint64(data[2]),
		}
		out, err := decodeRecord(encodeRecord(nil, &in))
		if err != nil || !sameRecord(in, out) {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", in, out, err)
		}
	})
}
