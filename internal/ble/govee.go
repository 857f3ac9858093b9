package ble

import "encoding/binary"

// Govee H5072/H5075 and H5074: manufacturer data under Govee's id 0xEC88.
// Govee publishes no format; these are the layouts decoded by Home
// Assistant's govee-ble (https://github.com/Bluetooth-Devices/govee-ble,
// whose tests hold frames captured from the devices), Theengs Decoder and
// GoveeWatcher. A Govee advertisement often carries an Apple iBeacon
// (company 0x004C) beside it: only 0xEC88 is read.
//
// H5075 (and H5072), 6 bytes: 0x00, then a 24-bit big-endian number
// whose bit 23 is the sign of the temperature and whose rest is
// temperature x 10000 + humidity x 10 (both in 0.1), then the battery in %,
// then 0x00.
//
// H5074, 7 bytes: 0x00, temperature int16 little-endian in 0.01 °C,
// humidity uint16 little-endian in 0.01 %, battery in %, 0x02.

const (
	h5075Len = 6
	h5074Len = 7
)

func parseH5075(d []byte) (Frame, error) {
	f := Frame{Format: FormatH5075}
	if len(d) != h5075Len {
		return f, reject(f.Format, "%d bytes, not %d", len(d), h5075Len)
	}
	packed := uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
	negative := packed&0x800000 != 0
	packed &^= 0x800000
	t := float64(packed/1000) / 10
	if negative {
		t = -t
	}
	f.add(Temperature, t)
	f.add(Humidity, float64(packed%1000)/10)
	f.add(Battery, float64(d[4]))
	return f, nil
}

func parseH5074(d []byte) (Frame, error) {
	f := Frame{Format: FormatH5074}
	if len(d) != h5074Len {
		return f, reject(f.Format, "%d bytes, not %d", len(d), h5074Len)
	}
	f.add(Temperature, float64(int16(binary.LittleEndian.Uint16(d[1:])))/100)
	f.add(Humidity, float64(binary.LittleEndian.Uint16(d[3:]))/100)
	f.add(Battery, float64(d[5]))
	return f, nil
}
