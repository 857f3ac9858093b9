package ble

import "encoding/binary"

// RuuviTag data format 5 (RAWv2): manufacturer data of Ruuvi Innovations
// (company id 0x0499), 24 bytes after the company id, big-endian.
// Documented at https://docs.ruuvi.com/communication/bluetooth-advertisements/data-format-5-rawv2:
//
//	0      format (5)
//	1-2    temperature, int16, 0.005 °C        (0x8000: not available)
//	3-4    humidity, uint16, 0.0025 %          (0xFFFF: not available)
//	5-6    pressure, uint16, Pa - 50000        (0xFFFF: not available)
//	7-12   acceleration x, y, z, int16, mG
//	13-14  power: 11 bits battery mV - 1600, 5 bits TX power
//	15     movement counter
//	16-17  measurement sequence number         (0xFFFF: not available)
//	18-23  MAC
//
// A value that is "not available" is left out, not published as its
// sentinel. The format has no battery percentage, only a voltage, which
// gatewayd does not publish.

const (
	ruuviFormat5 = 5
	ruuviLen     = 24
)

func parseRuuvi5(d []byte) (Frame, error) {
	f := Frame{Format: FormatRuuvi}
	if len(d) != ruuviLen || d[0] != ruuviFormat5 {
		return f, reject(f.Format, "%d bytes, not %d", len(d), ruuviLen)
	}
	if t := int16(binary.BigEndian.Uint16(d[1:])); t != -0x8000 {
		f.add(Temperature, float64(t)*5/1000)
	}
	if h := binary.BigEndian.Uint16(d[3:]); h != 0xFFFF {
		f.add(Humidity, float64(h)*25/10000)
	}
	if p := binary.BigEndian.Uint16(d[5:]); p != 0xFFFF {
		f.add(Pressure, (float64(p)+50000)/100)
	}
	if seq := binary.BigEndian.Uint16(d[16:]); seq != 0xFFFF {
		f.Counter, f.HasCounter = uint32(seq), true
	}
	return f, nil
}
