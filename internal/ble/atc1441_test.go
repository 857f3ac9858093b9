package ble

import "testing"

func TestATC1441(t *testing.T) {
	runCases(t, []decodeCase{
		// A LYWSD03MMC on atc1441's firmware, as logged by a user of Aruba's
		// BLE gateway (service data after 16 1A 18): 23.7 °C, 36 %, 41 %,
		// 2623 mV, frame 8.
		{name: "logged frame", ad: svc(0x181A, hexb(t, "A4 C1 38 07 FC EE 00 ED 24 29 0A 3F 08")), format: FormatATC1441,
			want: map[string]float64{Temperature: 23.7, Humidity: 36, Battery: 41}, counter: 8},
		// The README's template (0xaaaa temperature, 0xbb humidity...).
		{name: "readme template", ad: svc(0x181A, hexb(t, "00 00 00 00 00 00 aa aa bb cc dd dd 00")), format: FormatATC1441,
			want: map[string]float64{Temperature: -2184.6, Humidity: 187, Battery: 204}, counter: 0},
	})
}

func FuzzATC1441(f *testing.F) {
	f.Add(hexb(f, "A4 C1 38 07 FC EE 00 ED 24 29 0A 3F 08"))
	f.Fuzz(func(t *testing.T, d []byte) {
		fuzzAd(t, svc(0x181A, d), nil)
		if len(d) == atcLen {
			if _, err := parseATC1441(d); err != nil {
				t.Fatal(err)
			}
		}
	})
}
