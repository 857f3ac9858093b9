package sensors

// Preset register maps for common Modbus temperature and humidity
// transmitters (the model key). Each names its source; docs/sensors.md
// lists them with their serial defaults. Addresses are the ones on the wire
// (0-based).

type modbusModel struct {
	registers map[string]ModbusRegister
}

func modbusReg(addr int, table, format string, scale float64) ModbusRegister {
	return ModbusRegister{Address: &addr, Table: table, Format: format, Scale: &scale}
}

var modbusModels = map[string]modbusModel{
	// XY-MD02 (and XY-MD01, MD02 clones) with an SHT20 or SHT40: input
	// registers 0x0001 temperature (signed, 0.1 °C) and 0x0002 humidity
	// (0.1 %RH), read together with function 04. Default 9600 8N1, address
	// 1 (some batches ship with even parity). Source: the XY-MD02 manual
	// (the vendor's "Modbus RTU RS485 SHT20 Temperature Humidity
	// Transmitter" protocol sheet).
	"xy-md02": {registers: map[string]ModbusRegister{
		Temperature: modbusReg(1, "input", "int16", 0.1),
		Humidity:    modbusReg(2, "input", "uint16", 0.1),
	}},
	// Renke RS-WS-N01-8 (and its -EX, -2 housings), an industrial
	// DIN-rail transmitter: holding registers 0x0000 humidity (0.1 %RH) and
	// 0x0001 temperature (two's complement, 0.1 °C), function 03. Default
	// 4800 8N1, address 1 (holding registers 0x07D0 and 0x07D1 set the
	// address and the baud rate). Sources: Renke's RS-WS-N01-8 manual,
	// "Communication protocol" (8N1, factory default 4800 bit/s, address
	// 0x01), and T. Spielauer's register enumeration of the device
	// (tspi.at, "The RS-WS-N01-8 DIN rail temperature and humidity
	// sensor", 2024), which found no other readable registers.
	"rs-ws-n01": {registers: map[string]ModbusRegister{
		Humidity:    modbusReg(0, "holding", "uint16", 0.1),
		Temperature: modbusReg(1, "holding", "int16", 0.1),
	}},
	// L-com SRTH100 series RS-485 temperature/humidity sensors: holding
	// registers 0x0000 temperature (two's complement, 0.1 °C) and 0x0001
	// humidity (0.1 %RH). Default 9600 8N1, address 1. Source: the L-com
	// SRTH100-2001 user manual, "MODBUS Hold Register Address".
	"srth100": {registers: map[string]ModbusRegister{
		Temperature: modbusReg(0, "holding", "int16", 0.1),
		Humidity:    modbusReg(1, "holding", "uint16", 0.1),
	}},
	// KinCony's SHT30 RS-485 transmitter also gives its readings as 32-bit
	// floats: input registers 0x0002-0x0003 temperature (°C) and
	// 0x0004-0x0005 humidity (%RH), high word first. (0x0000 and 0x0001
	// hold them as 16-bit values in a sign-and-offset code of its own, which
	// the floats avoid.) Default 9600 8N1, address 1. Source: KinCony's
	// product page "RS485 Temperature and Humidity Sensor Modbus RTU Use By
	// SHT30", section "modbus protocol".
	"kincony-sht30": {registers: map[string]ModbusRegister{
		Temperature: modbusReg(2, "input", "float32", 1),
		Humidity:    modbusReg(4, "input", "float32", 1),
	}},
}
