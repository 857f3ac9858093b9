package ble

import "testing"

// Frames captured from the devices, from the tests of Home Assistant's
// govee-ble (tests/test_parser.py); the H5075 values are as Govee's app
// shows them (0.1 resolution, not govee-ble's 21.6498).
func TestGovee(t *testing.T) {
	ibeacon := hexb(t, "0215494e54454c4c495f524f434b535f48575075f2ffc2")
	runCases(t, []decodeCase{
		{name: "H5075", ad: mfr(0xEC88, hexb(t, "00 03 4D B2 64 00")), format: FormatH5075,
			want: map[string]float64{Temperature: 21.6, Humidity: 49.8, Battery: 100}, counter: -1},
		{name: "H5075 other values", ad: mfr(0xEC88, hexb(t, "00 03 0F C9 35 00")), format: FormatH5075,
			want: map[string]float64{Temperature: 20.0, Humidity: 64.9, Battery: 53}, counter: -1},
		// Bit 23 is the sign: -1.2 °C, 34.5 %.
		{name: "H5075 below zero", ad: mfr(0xEC88, hexb(t, "00 80 30 39 50 00")), format: FormatH5075,
			want: map[string]float64{Temperature: -1.2, Humidity: 34.5, Battery: 80}, counter: -1},
		{name: "H5074", ad: Advertisement{Address: "A4:C1:38:12:34:56", ManufacturerData: map[uint16][]byte{
			0xEC88: hexb(t, "00 e6 09 bc 12 64 02"), 0x004C: ibeacon}}, format: FormatH5074,
			want: map[string]float64{Temperature: 25.34, Humidity: 47.96, Battery: 100}, counter: -1},
	})
}

func FuzzGovee(f *testing.F) {
	f.Add(hexb(f, "00 03 4D B2 64 00"))
	f.Add(hexb(f, "00 e6 09 bc 12 64 02"))
	f.Fuzz(func(t *testing.T, d []byte) {
		fuzzAd(t, mfr(0xEC88, d), nil)
	})
}
