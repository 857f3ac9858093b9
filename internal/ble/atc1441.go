package ble

import "encoding/binary"

// ATC1441 format: service data under UUID 0x181A (Environmental Sensing),
// 13 bytes, big-endian, sent by atc1441's original custom firmware for the
// Xiaomi LYWSD03MMC (and by pvvx's firmware when its advertising type is
// "ATC1441"). Documented in the firmware's README,
// https://github.com/atc1441/ATC_MiThermometer#advertising-format-of-the-custom-firmware:
// bytes 5-10 of the advertisement the MAC in the correct order, 11-12 the
// temperature as an int16 in 0.1 °C, 13 the humidity in %, 14 the battery
// in %, 15-16 the battery in mV, 17 a frame counter.

const atcLen = 13

func parseATC1441(d []byte) (Frame, error) {
	f := Frame{Format: FormatATC1441}
	if len(d) != atcLen {
		return f, reject(f.Format, "%d bytes, not %d", len(d), atcLen)
	}
	f.add(Temperature, float64(int16(binary.BigEndian.Uint16(d[6:])))/10)
	f.add(Humidity, float64(d[8]))
	f.add(Battery, float64(d[9]))
	f.Counter, f.HasCounter = uint32(d[12]), true
	return f, nil
}
