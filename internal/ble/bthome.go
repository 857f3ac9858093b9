package ble

import (
	"crypto/cipher"
	"encoding/binary"
)

// BTHome v2: service data under UUID 0xFCD2, an open format spoken by
// Shelly BLU sensors, pvvx's and ATC's thermometer firmwares and many DIY
// sensors. Documented at https://bthome.io/format/ and
// https://bthome.io/encryption/.
//
// The first byte is the device information: bit 0 encrypted, bit 1 the
// device's MAC follows (6 bytes, least significant first), bit 2 sent on a
// trigger, bits 5-7 the version (2). Then objects: an id and a value of a
// length fixed by the id, little-endian, ids in ascending order. Encrypted,
// the objects are AES-CCM ciphertext followed by a 4-byte counter and a
// 4-byte MIC, the nonce being MAC, UUID (D2 FC), device information and
// counter.

const (
	bthomeEncrypted  = 1 << 0
	bthomeMACPresent = 1 << 1
	bthomeVersion2   = 2 << 5
	bthomeVersionBit = 7 << 5
)

// bthomeObject is what gatewayd takes from one object id: the quantity (""
// for one it skips), its length, whether it is signed, and its scale.
type bthomeObject struct {
	quantity string
	size     int // bytes; 0: a length byte follows the id (text, raw)
	signed   bool
	// The value is the integer times mul divided by div: dividing last
	// gives the double nearest the decimal (25.06, not 25.060000000000002).
	mul, div float64
}

// bthomeObjects lists every object id of the format page with its size, so
// that the objects gatewayd does not publish can be skipped. An unknown id
// ends the parse: its size is unknown, and the ids come in ascending order,
// so nothing gatewayd knows can follow it.
var bthomeObjects = func() [256]bthomeObject {
	var t [256]bthomeObject
	sized := func(size int, ids ...int) {
		for _, id := range ids {
			t[id] = bthomeObject{size: size}
		}
	}
	sized(1, 0x09, 0x46, 0x57, 0x58, 0x59, 0x60, 0x64, 0x2F, 0x3A)
	for id := 0x0F; id <= 0x2D; id++ { // binary sensors
		sized(1, id)
	}
	sized(2, 0x06, 0x07, 0x08, 0x0C, 0x0D, 0x0E, 0x12, 0x13, 0x14, 0x3C, 0x3D, 0x3F, 0x40, 0x41,
		0x43, 0x44, 0x47, 0x48, 0x49, 0x4A, 0x51, 0x52, 0x56, 0x5A, 0x5D, 0x5E, 0x5F, 0x61, 0xF0)
	sized(3, 0x05, 0x0A, 0x0B, 0x42, 0x4B, 0xF2)
	sized(4, 0x3E, 0x4C, 0x4D, 0x4E, 0x4F, 0x50, 0x55, 0x5B, 0x5C, 0x62, 0x63, 0xF1)
	t[0x53] = bthomeObject{size: 0} // text, a length byte follows
	t[0x54] = bthomeObject{size: 0} // raw, a length byte follows
	t[0x00] = bthomeObject{size: 1} // packet id
	t[0x01] = bthomeObject{quantity: Battery, size: 1, mul: 1, div: 1}
	t[0x02] = bthomeObject{quantity: Temperature, size: 2, signed: true, mul: 1, div: 100}
	t[0x03] = bthomeObject{quantity: Humidity, size: 2, mul: 1, div: 100}
	t[0x04] = bthomeObject{quantity: Pressure, size: 3, mul: 1, div: 100}
	t[0x2E] = bthomeObject{quantity: Humidity, size: 1, mul: 1, div: 1}
	t[0x45] = bthomeObject{quantity: Temperature, size: 2, signed: true, mul: 1, div: 10}
	t[0x57] = bthomeObject{quantity: Temperature, size: 1, signed: true, mul: 1, div: 1}
	t[0x58] = bthomeObject{quantity: Temperature, size: 1, signed: true, mul: 35, div: 100}
	return t
}()

// bthomeKnown reports whether id is an object id of the format.
func bthomeKnown(id byte) bool {
	o := bthomeObjects[id]
	return o.size > 0 || id == 0x53 || id == 0x54
}

func parseBTHome(d []byte, key cipher.AEAD, mac [6]byte) (Frame, error) {
	f := Frame{Format: FormatBTHome}
	if len(d) < 1 {
		return f, reject(f.Format, "empty")
	}
	info := d[0]
	if info&bthomeVersionBit != bthomeVersion2 {
		return f, reject(f.Format, "version %d, not 2", info>>5)
	}
	rest := d[1:]
	if info&bthomeMACPresent != 0 {
		if len(rest) < 6 {
			return f, reject(f.Format, "too short for its MAC")
		}
		for i := range 6 {
			mac[i] = rest[5-i]
		}
		rest = rest[6:]
	}
	if info&bthomeEncrypted != 0 {
		f.Encrypted = true
		// ciphertext (at least one object id and a byte), counter, MIC
		if len(rest) < 2+4+4 {
			return f, reject(f.Format, "encrypted frame of %d bytes is too short", len(d))
		}
		n := len(rest) - 8
		counter := rest[n : n+4]
		f.Counter, f.HasCounter = binary.LittleEndian.Uint32(counter), true
		if key == nil {
			return f, nil
		}
		var nonce [13]byte
		copy(nonce[:6], mac[:])
		nonce[6], nonce[7], nonce[8] = 0xD2, 0xFC, info
		copy(nonce[9:], counter)
		ct := make([]byte, 0, n+4)
		ct = append(append(ct, rest[:n]...), rest[n+4:]...)
		plain, err := key.Open(ct[:0], nonce[:], ct, nil)
		if err != nil {
			return f, reject(f.Format, "MIC does not match: wrong bindkey, or a forged frame")
		}
		rest = plain
	}
	return bthomeObjectsOf(f, rest)
}

// bthomeObjectsOf reads the objects of a plaintext payload into f.
func bthomeObjectsOf(f Frame, p []byte) (Frame, error) {
	for len(p) > 0 {
		id := p[0]
		if !bthomeKnown(id) {
			break
		}
		o := bthomeObjects[id]
		p = p[1:]
		size := o.size
		if size == 0 {
			if len(p) < 1 {
				return f, reject(f.Format, "object 0x%02X has no length", id)
			}
			size, p = int(p[0]), p[1:]
		}
		if len(p) < size {
			return f, reject(f.Format, "object 0x%02X is cut short", id)
		}
		v := p[:size]
		p = p[size:]
		switch {
		case id == 0x00 && !f.Encrypted:
			// The packet id tells repeats of an unencrypted frame apart;
			// an encrypted one has its counter.
			f.Counter, f.HasCounter = uint32(v[0]), true
		case o.quantity != "":
			f.add(o.quantity, float64(leInt(v, o.signed))*o.mul/o.div)
		}
	}
	return f, nil
}

// leInt reads a little-endian integer of 1 to 4 bytes.
func leInt(b []byte, signed bool) int64 {
	var u uint64
	for i := len(b) - 1; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	if signed {
		shift := 64 - 8*uint(len(b))
		return int64(u<<shift) >> shift
	}
	return int64(u)
}
