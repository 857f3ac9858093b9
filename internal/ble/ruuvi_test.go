package ble

import "testing"

// The test vectors of Ruuvi's data format 5 documentation
// (docs.ruuvi.com, "Data Format 5 (RAWv2)", "Test vectors").
func TestRuuvi5(t *testing.T) {
	runCases(t, []decodeCase{
		{name: "valid data", ad: mfr(0x0499, hexb(t, "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")), format: FormatRuuvi,
			want: map[string]float64{Temperature: 24.3, Humidity: 53.49, Pressure: 1000.44}, counter: 205},
		{name: "maximum values", ad: mfr(0x0499, hexb(t, "057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F")), format: FormatRuuvi,
			want: map[string]float64{Temperature: 163.835, Humidity: 163.835, Pressure: 1155.34}, counter: 65534},
		{name: "minimum values", ad: mfr(0x0499, hexb(t, "058001000000008001800180010000000000CBB8334C884F")), format: FormatRuuvi,
			want: map[string]float64{Temperature: -163.835, Humidity: 0, Pressure: 500}, counter: 0},
		// Every value "not available": nothing is published.
		{name: "invalid values", ad: mfr(0x0499, hexb(t, "058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF")), format: FormatRuuvi,
			want: map[string]float64{}, counter: -1},
		{name: "too short", ad: mfr(0x0499, hexb(t, "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C88")), errKind: "rejected"},
	})
}

func FuzzRuuvi5(f *testing.F) {
	f.Add(hexb(f, "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"))
	f.Add(hexb(f, "058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF"))
	f.Fuzz(func(t *testing.T, d []byte) {
		fuzzAd(t, mfr(0x0499, d), nil)
	})
}
