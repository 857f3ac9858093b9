package ble

import (
	"encoding/hex"
	"errors"
	"math"
	"strings"
	"testing"
)

// hexb decodes hex with spaces, for frames written as the documents print
// them.
func hexb(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeCase is one table row: an advertisement and what it decodes to
// (want nil: an error is expected, of kind errKind).
type decodeCase struct {
	name    string
	ad      Advertisement
	format  string
	want    map[string]float64
	counter int64 // -1: no counter
	errKind string
}

func svc(uuid uint16, d []byte) Advertisement {
	return Advertisement{Address: "A4:C1:38:12:34:56", ServiceData: map[uint16][]byte{uuid: d}}
}

func mfr(id uint16, d []byte) Advertisement {
	return Advertisement{Address: "A4:C1:38:12:34:56", ManufacturerData: map[uint16][]byte{id: d}}
}

func runCases(t *testing.T, cases []decodeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := Identify(&c.ad)
			checkFrame(t, f, err, c)
		})
	}
}

func checkFrame(t *testing.T, f Frame, err error, c decodeCase) {
	t.Helper()
	switch c.errKind {
	case "":
		if err != nil {
			t.Fatalf("error %v", err)
		}
	case "rejected":
		var fe *FrameError
		if !errors.As(err, &fe) {
			t.Fatalf("got %v (%v), want a FrameError", err, f)
		}
		return
	case "unknown":
		if !errors.Is(err, ErrUnknown) {
			t.Fatalf("got %v (%v), want ErrUnknown", err, f)
		}
		return
	case "repeat":
		if !errors.Is(err, ErrRepeat) {
			t.Fatalf("got %v (%v), want ErrRepeat", err, f)
		}
		return
	}
	if f.Format != c.format {
		t.Errorf("format %q, want %q", f.Format, c.format)
	}
	got := map[string]float64{}
	for _, v := range f.Values {
		got[v.Quantity] = v.Value
	}
	if len(got) != len(c.want) {
		t.Errorf("values %v, want %v", got, c.want)
	}
	for q, w := range c.want {
		if g, ok := got[q]; !ok || math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v, want %v (all: %v)", q, g, w, got)
		}
	}
	switch {
	case c.counter < 0 && f.HasCounter:
		t.Errorf("counter %d, want none", f.Counter)
	case c.counter >= 0 && (!f.HasCounter || int64(f.Counter) != c.counter):
		t.Errorf("counter %d (set %v), want %d", f.Counter, f.HasCounter, c.counter)
	}
}

// fuzzAd feeds the fuzzer's bytes to every decoder through one part of an
// advertisement; nothing may panic, and a frame without an error must hold
// only finite values.
func fuzzAd(t *testing.T, ad Advertisement, key []byte) {
	f, err := Identify(&ad)
	checkFuzzed(t, f, err)
	d, err := NewDecoder(ad.Address, key)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		f, err = d.Decode(&ad)
		checkFuzzed(t, f, err)
	}
}

func checkFuzzed(t *testing.T, f Frame, err error) {
	if err != nil {
		return
	}
	for _, v := range f.Values {
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			t.Fatalf("%s = %v", v.Quantity, v.Value)
		}
	}
	_ = f.String()
}

func TestParseAddress(t *testing.T) {
	for _, s := range []string{"A4:C1:38:12:34:56", "a4:c1:38:12:34:56", "A4-C1-38-12-34-56"} {
		got, err := NormalizeAddress(s)
		if err != nil || got != "A4:C1:38:12:34:56" {
			t.Errorf("%q: %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "A4:C1:38:12:34", "A4:C1:38:12:34:5G", "A4C1:38:12:34:567", "A4:C1:38:12:34:56:"} {
		if _, err := ParseAddress(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}

func TestUnknownAndPrecedence(t *testing.T) {
	runCases(t, []decodeCase{
		{name: "nothing", ad: Advertisement{Address: "A4:C1:38:12:34:56"}, errKind: "unknown"},
		// An iBeacon (Apple, 0x004C) alone is not a thermometer.
		{name: "ibeacon", ad: mfr(0x004C, hexb(t, "0215494e54454c4c495f524f434b535f48575075f2ffc2")), errKind: "unknown"},
		{name: "0x181A of another length", ad: svc(0x181A, make([]byte, 14)), errKind: "unknown"},
		{name: "ruuvi format 3", ad: mfr(0x0499, hexb(t, "03 29 1A 1E CE 1E FC 18 F9 42 02 CA 0B 53")), errKind: "unknown"},
		{name: "govee of another length", ad: mfr(0xEC88, make([]byte, 9)), errKind: "unknown"},
	})
}

func TestFrameString(t *testing.T) {
	f := Frame{Format: FormatPVVX, Values: []Value{{Temperature, 21.5}, {Humidity, 40}}}
	if got := f.String(); got != "pvvx custom temperature=21.5 humidity=40" {
		t.Errorf("%q", got)
	}
	f = Frame{Format: FormatBTHome, Encrypted: true}
	if got := f.String(); got != "BTHome v2 (encrypted: needs its bindkey)" {
		t.Errorf("%q", got)
	}
}

// A repeat is told by the frame's counter, and only the last few are kept.
func TestDecoderRepeats(t *testing.T) {
	d, err := NewDecoder("A4:C1:38:12:34:56", nil)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(counter byte) *Advertisement {
		b := hexb(t, "56 34 12 38 C1 A4 F6 08 8B 10 A8 0B 57 00 04")
		b[13] = counter
		ad := svc(0x181A, b)
		return &ad
	}
	steps := []struct {
		counter byte
		err     error
	}{{1, nil}, {1, ErrRepeat}, {2, nil}, {1, ErrRepeat}, {3, nil}, {4, nil}, {5, nil}, {1, nil}, {5, ErrRepeat}}
	for i, s := range steps {
		if _, err := d.Decode(frame(s.counter)); !errors.Is(err, s.err) {
			t.Errorf("step %d counter %d: %v, want %v", i, s.counter, err, s.err)
		}
	}
	// Without a counter (Govee) every advertisement is a frame.
	g := mfr(0xEC88, hexb(t, "00 03 4D B2 64 00"))
	for range 2 {
		if _, err := d.Decode(&g); err != nil {
			t.Fatal(err)
		}
	}
}
