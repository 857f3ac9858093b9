package ble

import "encoding/binary"

// pvvx custom format: service data under UUID 0x181A (Environmental
// Sensing), 15 bytes, all little-endian, sent by pvvx's firmware for the
// Xiaomi LYWSD03MMC, MHO-C401, CGG1 and other Telink thermometers when its
// advertising type is "Custom". Documented in the firmware's README,
// https://github.com/pvvx/ATC_MiThermometer#custom-format-all-data-little-endian:
//
//	uint8_t  MAC[6];        // least significant first
//	int16_t  temperature;   // x 0.01 °C
//	uint16_t humidity;      // x 0.01 %
//	uint16_t battery_mv;    // mV
//	uint8_t  battery_level; // 0..100 %
//	uint8_t  counter;       // measurement count
//	uint8_t  flags;         // GPIO trigger and reed switch bits

const pvvxLen = 15

func parsePVVX(d []byte) (Frame, error) {
	f := Frame{Format: FormatPVVX}
	if len(d) != pvvxLen {
		return f, reject(f.Format, "%d bytes, not %d", len(d), pvvxLen)
	}
	f.add(Temperature, float64(int16(binary.LittleEndian.Uint16(d[6:])))/100)
	f.add(Humidity, float64(binary.LittleEndian.Uint16(d[8:]))/100)
	f.add(Battery, float64(d[12]))
	f.Counter, f.HasCounter = uint32(d[13]), true
	return f, nil
}
