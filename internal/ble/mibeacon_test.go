package ble

import "testing"

// Frames captured from Xiaomi devices, from WatchFlower's
// docs/mibeacon-ble-api.md (the two MAC bytes it masks as XX are filled in).
func TestMiBeacon(t *testing.T) {
	runCases(t, []decodeCase{
		{name: "LYWSDCGQ temperature+humidity", ad: svc(0xFE95, hexb(t, "50 20 aa 01 ca 11 22 d0 a8 65 4c 0d 10 04 18 01 24 02")), format: FormatMiBeacon,
			want: map[string]float64{Temperature: 28, Humidity: 54.8}, counter: 0xca},
		{name: "CGG1 temperature", ad: svc(0xFE95, hexb(t, "50 30 47 03 41 11 22 10 34 2d 58 04 10 02 12 01")), format: FormatMiBeacon,
			want: map[string]float64{Temperature: 27.4}, counter: 0x41},
		{name: "CGG1 temperature+humidity", ad: svc(0xFE95, hexb(t, "50 30 47 03 83 11 22 10 34 2d 58 0d 10 04 10 01 7e 02")), format: FormatMiBeacon,
			want: map[string]float64{Temperature: 27.2, Humidity: 63.8}, counter: 0x83},
		// Frame control 0x2070: MAC, capability, objects.
		{name: "MHO-C303 battery", ad: svc(0xFE95, hexb(t, "70 20 d3 06 20 11 22 11 45 76 e7 09 0a 10 01 00")), format: FormatMiBeacon,
			want: map[string]float64{Battery: 0}, counter: 0x20},
		{name: "LYWSD02 humidity", ad: svc(0xFE95, hexb(t, "70 20 5b 04 fc 11 22 83 c8 59 3f 09 06 10 02 19 01")), format: FormatMiBeacon,
			want: map[string]float64{Humidity: 28.1}, counter: 0xfc},
		// Capability with IO (bit 5): two more bytes before the objects.
		{name: "capability io", ad: svc(0xFE95, hexb(t, "70 20 5b 04 fc 11 22 83 c8 59 3f 20 00 00 06 10 02 19 01")), format: FormatMiBeacon,
			want: map[string]float64{Humidity: 28.1}, counter: 0xfc},
		// No object included: a beacon without readings.
		{name: "no objects", ad: svc(0xFE95, hexb(t, "10 20 aa 01 ca 11 22 d0 a8 65 4c")), format: FormatMiBeacon,
			want: map[string]float64{}, counter: 0xca},
		{name: "mesh", ad: svc(0xFE95, hexb(t, "d0 20 aa 01 ca")), errKind: "unknown"},
		{name: "too short", ad: svc(0xFE95, hexb(t, "50 20 aa 01")), errKind: "rejected"},
		{name: "mac cut short", ad: svc(0xFE95, hexb(t, "50 20 aa 01 ca 11 22")), errKind: "rejected"},
		{name: "object cut short", ad: svc(0xFE95, hexb(t, "50 20 aa 01 ca 11 22 d0 a8 65 4c 0d 10 04 18 01")), errKind: "rejected"},
		{name: "trailing bytes", ad: svc(0xFE95, hexb(t, "50 20 aa 01 ca 11 22 d0 a8 65 4c 0d 10 04 18 01 24 02 00")), errKind: "rejected"},
	})
}

// An encrypted MiBeacon v5 frame (frame control 0x5858, product 0x055B:
// LYWSD03MMC on its stock firmware) is named, and rejected
// by a sensor, with or without a bindkey.
func TestMiBeaconEncrypted(t *testing.T) {
	ad := svc(0xFE95, hexb(t, "58 58 5b 05 a8 56 34 12 38 c1 a4 dc 4c 9c 8b 2a 08 00 00 d6 21 4e e2"))
	f, err := Identify(&ad)
	if err != nil || !f.Encrypted || f.Format != FormatMiBeacon || f.String() != "Xiaomi MiBeacon (encrypted: not supported)" {
		t.Fatalf("%v %v", f, err)
	}
	for _, key := range [][]byte{nil, hexb(t, docKey)} {
		d, _ := NewDecoder(ad.Address, key)
		if _, err := d.Decode(&ad); !isRejected(err) {
			t.Errorf("key %x: %v", key, err)
		}
	}
}

func FuzzMiBeacon(f *testing.F) {
	f.Add(hexb(f, "50 20 aa 01 ca 11 22 d0 a8 65 4c 0d 10 04 18 01 24 02"))
	f.Add(hexb(f, "70 20 5b 04 fc 11 22 83 c8 59 3f 20 00 00 06 10 02 19 01"))
	f.Add(hexb(f, "58 58 5b 05 a8 56 34 12 38 c1 a4 dc 4c 9c 8b 2a 08 00 00 d6 21 4e e2"))
	f.Fuzz(func(t *testing.T, d []byte) {
		fuzzAd(t, svc(0xFE95, d), nil)
	})
}
