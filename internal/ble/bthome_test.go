package ble

import (
	"crypto/aes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/dtls/v3/pkg/crypto/ccm"
)

// The key, MAC and frame of the example at https://bthome.io/encryption/:
// temperature 02CA09 and humidity 03BF13 encrypted with counter 00112233.
// The ciphertext and MIC were checked independently with Python's
// cryptography (AESCCM, tag_length=4): a47266c95f73 and 78237214.
const (
	docKey     = "231d39c1d7cc1ab1aee224cd096db932"
	docMAC     = "54:48:E6:8F:80:A5"
	docEncrypt = "41 a47266c95f73 00112233 78237214"
)

// sealBTHome encrypts a BTHome v2 payload as a device does.
func sealBTHome(t testing.TB, key []byte, mac [6]byte, info byte, counter uint32, plain []byte) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := ccm.NewCCM(block, 4, 13)
	if err != nil {
		t.Fatal(err)
	}
	var c [4]byte
	binary.LittleEndian.PutUint32(c[:], counter)
	nonce := append(append(append(mac[:0:0], mac[:]...), 0xD2, 0xFC, info), c[:]...)
	sealed := aead.Seal(nil, nonce, plain, nil)
	out := []byte{info}
	if info&bthomeMACPresent != 0 {
		for i := range 6 {
			out = append(out, mac[5-i])
		}
	}
	out = append(out, sealed[:len(sealed)-4]...)
	out = append(out, c[:]...)
	return append(out, sealed[len(sealed)-4:]...)
}

func TestBTHome(t *testing.T) {
	runCases(t, []decodeCase{
		// bthome.io/format: the objects' examples, one frame each.
		{name: "battery 0161", ad: svc(0xFCD2, hexb(t, "40 0161")), format: FormatBTHome,
			want: map[string]float64{Battery: 97}, counter: -1},
		{name: "temperature 02CA09", ad: svc(0xFCD2, hexb(t, "40 02CA09")), format: FormatBTHome,
			want: map[string]float64{Temperature: 25.06}, counter: -1},
		{name: "humidity 03BF13", ad: svc(0xFCD2, hexb(t, "40 03BF13")), format: FormatBTHome,
			want: map[string]float64{Humidity: 50.55}, counter: -1},
		{name: "humidity 2E23", ad: svc(0xFCD2, hexb(t, "40 2E23")), format: FormatBTHome,
			want: map[string]float64{Humidity: 35}, counter: -1},
		{name: "pressure 04138A01", ad: svc(0xFCD2, hexb(t, "40 04138A01")), format: FormatBTHome,
			want: map[string]float64{Pressure: 1008.83}, counter: -1},
		// bthome.io/format's example advertisement: 25.00 °C, 50.55 %.
		{name: "doc example", ad: svc(0xFCD2, hexb(t, "40 02C409 03BF13")), format: FormatBTHome,
			want: map[string]float64{Temperature: 25, Humidity: 50.55}, counter: -1},
		// Shelly BLU H&T (shelly-api-docs.shelly.cloud/docs-ble/Devices/ht):
		// packet id, battery, humidity uint8, temperature sint16 0.1, and
		// a negative one.
		{name: "shelly blu h&t", ad: svc(0xFCD2, hexb(t, "44 0007 0164 2E30 45 F6FF")), format: FormatBTHome,
			want: map[string]float64{Battery: 100, Humidity: 48, Temperature: -1}, counter: 7},
		// Objects gatewayd skips (illuminance, a binary sensor, text) before
		// the ones it reads; an unknown id (0x3B) ends the frame.
		{name: "skipped objects", ad: svc(0xFCD2, hexb(t, "40 02C409 05138A14 0F01 53 03414243 57EC 3B 0161")), format: FormatBTHome,
			want: map[string]float64{Temperature: 25}, counter: -1},
		{name: "sint8 0.35", ad: svc(0xFCD2, hexb(t, "40 5864")), format: FormatBTHome,
			want: map[string]float64{Temperature: 35}, counter: -1},
		{name: "empty", ad: svc(0xFCD2, nil), errKind: "rejected"},
		{name: "version 1", ad: svc(0xFCD2, hexb(t, "20 02C409")), errKind: "rejected"},
		{name: "cut short", ad: svc(0xFCD2, hexb(t, "40 02C4")), errKind: "rejected"},
		{name: "text without length", ad: svc(0xFCD2, hexb(t, "40 53")), errKind: "rejected"},
		{name: "mac cut short", ad: svc(0xFCD2, hexb(t, "42 A580")), errKind: "rejected"},
		{name: "encrypted too short", ad: svc(0xFCD2, hexb(t, "41 02 00112233 78237214")), errKind: "rejected"},
	})
}

func TestBTHomeEncrypted(t *testing.T) {
	key := hexb(t, docKey)
	mac, err := ParseAddress(docMAC)
	if err != nil {
		t.Fatal(err)
	}
	// The library's Seal gives the document's bytes.
	if got, want := sealBTHome(t, key, mac, 0x41, 0x33221100, hexb(t, "02CA09 03BF13")), hexb(t, docEncrypt); string(got) != string(want) {
		t.Fatalf("sealed %x, the document says %x", got, want)
	}
	ad := Advertisement{Address: docMAC, ServiceData: map[uint16][]byte{0xFCD2: hexb(t, docEncrypt)}}
	d, err := NewDecoder(docMAC, key)
	if err != nil {
		t.Fatal(err)
	}
	f, err := d.Decode(&ad)
	checkFrame(t, f, err, decodeCase{format: FormatBTHome, want: map[string]float64{Temperature: 25.06, Humidity: 50.55}, counter: 0x33221100})
	if !f.Encrypted {
		t.Error("not marked encrypted")
	}
	// The same frame again is a repeat, not an error.
	if _, err := d.Decode(&ad); !errors.Is(err, ErrRepeat) {
		t.Errorf("repeat: %v", err)
	}

	// Without the key: Identify names the format, a Decoder rejects it.
	f, err = Identify(&ad)
	if err != nil || !f.Encrypted || len(f.Values) != 0 || f.Format != FormatBTHome {
		t.Errorf("identify: %v %v", f, err)
	}
	plain, _ := NewDecoder(docMAC, nil)
	if _, err := plain.Decode(&ad); !isRejected(err) {
		t.Errorf("no key: %v", err)
	}

	// A wrong key, a flipped ciphertext bit, a flipped MIC bit, a counter
	// changed in transit: the MIC does not match.
	wrong, _ := NewDecoder(docMAC, hexb(t, "00112233445566778899aabbccddeeff"))
	if _, err := wrong.Decode(&ad); !isRejected(err) {
		t.Errorf("wrong key: %v", err)
	}
	for _, i := range []int{1, 7, 9, 14} {
		b := hexb(t, docEncrypt)
		b[i] ^= 0x01
		bad := Advertisement{Address: docMAC, ServiceData: map[uint16][]byte{0xFCD2: b}}
		fresh, _ := NewDecoder(docMAC, key)
		if _, err := fresh.Decode(&bad); !isRejected(err) {
			t.Errorf("byte %d flipped: %v", i, err)
		}
	}
	// The right frame under another address: the nonce differs.
	other := Advertisement{Address: "54:48:E6:8F:80:A6", ServiceData: ad.ServiceData}
	od, _ := NewDecoder(other.Address, key)
	if _, err := od.Decode(&other); !isRejected(err) {
		t.Errorf("other address: %v", err)
	}

	// A plaintext frame under a device that has a bindkey is refused.
	clear := Advertisement{Address: docMAC, ServiceData: map[uint16][]byte{0xFCD2: hexb(t, "40 02CA09")}}
	if _, err := d.Decode(&clear); !isRejected(err) {
		t.Errorf("plaintext with a key: %v", err)
	}
}

func TestBTHomeReplay(t *testing.T) {
	key := hexb(t, docKey)
	mac, _ := ParseAddress(docMAC)
	d, _ := NewDecoder(docMAC, key)
	frame := func(counter uint32, temp int16) *Advertisement {
		p := []byte{0x02, 0, 0}
		binary.LittleEndian.PutUint16(p[1:], uint16(temp))
		return &Advertisement{Address: docMAC, ServiceData: map[uint16][]byte{0xFCD2: sealBTHome(t, key, mac, 0x41, counter, p)}}
	}
	steps := []struct {
		counter uint32
		want    string
	}{
		{1000, "ok"},
		{1001, "ok"},
		{1001, "repeat"},   // the same counter: the same frame
		{500, "rejected"},  // went back: a recording played again
		{1002, "ok"},       // the replay changed nothing
		{5, "ok"},          // below 100: the device restarted
		{6, "ok"},          // and counts on from there
		{1000, "ok"},       // higher again
		{999, "rejected"},  //
		{0xFFFFFFFF, "ok"}, //
	}
	for i, s := range steps {
		_, err := d.Decode(frame(s.counter, int16(i)))
		var got string
		switch {
		case err == nil:
			got = "ok"
		case errors.Is(err, ErrRepeat):
			got = "repeat"
		case isRejected(err):
			got = "rejected"
		default:
			got = err.Error()
		}
		if got != s.want {
			t.Errorf("step %d counter %d: %s (%v), want %s", i, s.counter, got, err, s.want)
		}
	}
}

// A device that puts its MAC in the frame (bit 1) is decrypted with that
// MAC, whatever address it advertises under (a random one, say).
func TestBTHomeMACInFrame(t *testing.T) {
	key := hexb(t, docKey)
	mac, _ := ParseAddress(docMAC)
	sd := sealBTHome(t, key, mac, 0x43, 7, hexb(t, "0161 02CA09"))
	ad := Advertisement{Address: "D1:02:03:04:05:06", ServiceData: map[uint16][]byte{0xFCD2: sd}}
	d, _ := NewDecoder(ad.Address, key)
	f, err := d.Decode(&ad)
	checkFrame(t, f, err, decodeCase{format: FormatBTHome, want: map[string]float64{Battery: 97, Temperature: 25.06}, counter: 7})
	// Unencrypted with a MAC.
	runCases(t, []decodeCase{{name: "mac plain", ad: svc(0xFCD2, hexb(t, "42 A5808FE64854 02CA09")), format: FormatBTHome,
		want: map[string]float64{Temperature: 25.06}, counter: -1}})
}

func isRejected(err error) bool {
	var fe *FrameError
	return errors.As(err, &fe)
}

func FuzzBTHome(f *testing.F) {
	f.Add(hexb(f, docEncrypt), true)
	f.Add(hexb(f, "44 0007 0164 2E30 45 F6FF"), false)
	f.Add(hexb(f, "40 02C409 05138A14 0F01 53 03414243 57EC 3B 0161"), false)
	f.Add(hexb(f, "42 A5808FE64854 02CA09"), false)
	f.Fuzz(func(t *testing.T, d []byte, keyed bool) {
		var key []byte
		if keyed {
			key = hexb(t, docKey)
		}
		fuzzAd(t, Advertisement{Address: docMAC, ServiceData: map[uint16][]byte{0xFCD2: d}}, key)
	})
}
