package ble

import "testing"

// Frames laid out as pvvx's README documents the custom format (no example
// bytes are published): MAC least significant first, then little-endian
// temperature (0.01 °C), humidity (0.01 %), battery mV, battery %, counter,
// flags.
func TestPVVX(t *testing.T) {
	runCases(t, []decodeCase{
		{name: "22.94 °C", ad: svc(0x181A, hexb(t, "56 34 12 38 C1 A4 F6 08 8B 10 A8 0B 57 00 04")), format: FormatPVVX,
			want: map[string]float64{Temperature: 22.94, Humidity: 42.35, Battery: 87}, counter: 0},
		{name: "below zero", ad: svc(0x181A, hexb(t, "56 34 12 38 C1 A4 0C FE 10 27 E4 0C 64 FF 00")), format: FormatPVVX,
			want: map[string]float64{Temperature: -5, Humidity: 100, Battery: 100}, counter: 255},
	})
}

func FuzzPVVX(f *testing.F) {
	f.Add(hexb(f, "56 34 12 38 C1 A4 F6 08 8B 10 A8 0B 57 00 04"))
	f.Fuzz(func(t *testing.T, d []byte) {
		fuzzAd(t, svc(0x181A, d), nil)
		if len(d) == pvvxLen {
			if _, err := parsePVVX(d); err != nil {
				t.Fatal(err)
			}
		}
	})
}
