package ble

import "encoding/binary"

// Xiaomi MiBeacon: service data under UUID 0xFE95, sent by Xiaomi's stock
// firmwares (LYWSDCGQ, CGG1, MHO-C303, LYWSD02...) and by pvvx's firmware
// when its advertising type is "Mi". Documented in Xiaomi's MiBeacon and
// object definitions (iot.mi.com, "BLE object definition"), summed up with
// captured examples in WatchFlower's docs/mibeacon-ble-api.md
// (https://github.com/emericg/WatchFlower):
//
//	frame control (2 bytes, little-endian): bit 3 encrypted, bit 4 MAC
//	  included, bit 5 capability included, bit 6 object included, bit 7
//	  mesh, bits 12-15 version
//	product id (2), frame counter (1)
//	MAC (6, least significant first) if bit 4
//	capability (1) if bit 5, and 2 bytes of IO capability if its bit 5
//	objects if bit 6: id (2, little-endian), length (1), value
//
// Only unencrypted frames are decoded: an encrypted one (stock LYWSD03MMC,
// MiBeacon v4/v5) is reported as encrypted, and its sensor counts it as a
// failed read (flash pvvx's firmware, which speaks BTHome or the custom
// format). Objects: 0x1004 temperature (int16, 0.1 °C), 0x1006 humidity
// (uint16, 0.1 %), 0x100A battery (uint8, %), 0x100D temperature and
// humidity (int16 and uint16, 0.1).

const (
	miEncrypted  = 1 << 3
	miMAC        = 1 << 4
	miCapability = 1 << 5
	miObjects    = 1 << 6
	miMesh       = 1 << 7
)

func parseMiBeacon(d []byte) (Frame, error) {
	f := Frame{Format: FormatMiBeacon}
	if len(d) < 5 {
		return f, reject(f.Format, "%d bytes is too short", len(d))
	}
	fc := binary.LittleEndian.Uint16(d)
	if fc&miMesh != 0 {
		return f, ErrUnknown // mesh frames carry no readings
	}
	f.Counter, f.HasCounter = uint32(d[4]), true
	p := d[5:]
	if fc&miMAC != 0 {
		if len(p) < 6 {
			return f, reject(f.Format, "too short for its MAC")
		}
		p = p[6:]
	}
	if fc&miCapability != 0 {
		if len(p) < 1 {
			return f, reject(f.Format, "too short for its capability")
		}
		io := p[0]&0x20 != 0
		p = p[1:]
		if io {
			if len(p) < 2 {
				return f, reject(f.Format, "too short for its IO capability")
			}
			p = p[2:]
		}
	}
	if fc&miEncrypted != 0 {
		f.Encrypted = true
		return f, nil
	}
	if fc&miObjects == 0 {
		return f, nil // a beacon without readings
	}
	for len(p) >= 3 {
		id, n := binary.LittleEndian.Uint16(p), int(p[2])
		p = p[3:]
		if len(p) < n {
			return f, reject(f.Format, "object 0x%04X is cut short", id)
		}
		v := p[:n]
		p = p[n:]
		switch {
		case id == 0x1004 && n == 2:
			f.add(Temperature, float64(int16(binary.LittleEndian.Uint16(v)))/10)
		case id == 0x1006 && n == 2:
			f.add(Humidity, float64(binary.LittleEndian.Uint16(v))/10)
		case id == 0x100A && n >= 1:
			f.add(Battery, float64(v[0]))
		case id == 0x100D && n == 4:
			f.add(Temperature, float64(int16(binary.LittleEndian.Uint16(v)))/10)
			f.add(Humidity, float64(binary.LittleEndian.Uint16(v[2:]))/10)
		}
	}
	if len(p) > 0 {
		return f, reject(f.Format, "%d bytes left after its objects", len(p))
	}
	return f, nil
}
