package homeassistant

import (
	"strings"
	"testing"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

func TestModel(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		src  any
		want string
	}{
		{"iio", &sensors.IIOConfig{Device: "bme280"}, "iio bme280"},
		{"hwmon", &sensors.HwmonConfig{Chip: "sht3x", Label: "x"}, "hwmon sht3x"},
		{"w1", &sensors.W1Config{Device: "28-0316a2791eff"}, "w1 28-0316a2791eff"},
		{"exec", &sensors.ExecConfig{Command: []string{"/usr/local/bin/read-sensor", "--json"}}, "exec read-sensor"},
		{"simulated", &sensors.SimulatedConfig{Seed: 1}, "simulated"},
		{"rtl433", &sensors.RTL433Config{Model: "Acurite-Tower", ID: "3456", Command: []string{"rtl_433", "-F", "json"}}, "rtl433 Acurite-Tower"},
		{"ble", &sensors.BLEConfig{Address: "A4:C1:38:12:34:56", Bindkey: "00112233445566778899aabbccddeeff"}, "ble A4:C1:38:12:34:56"},
		{"modbus", &sensors.ModbusConfig{URL: "tcp://10.0.0.5:502", Model: "xy-md02"}, "modbus xy-md02"},
		{"modbus", &sensors.ModbusConfig{URL: "tcp://10.0.0.5:502"}, "modbus tcp://10.0.0.5:502"},
		{"iio", &sensors.IIOConfig{}, "iio"},
		{"x", nil, "x"},
		{"x", (*sensors.IIOConfig)(nil), "x"},
		{"x", 3, "x"},
	} {
		if got := Model(tc.typ, tc.src); got != tc.want {
			t.Errorf("Model(%s, %#v) = %q, want %q", tc.typ, tc.src, got, tc.want)
		}
	}
	// Every registered type gives its name first.
	for _, typ := range sensors.Types() {
		c, _ := sensors.NewConfig(typ)
		if got := Model(typ, c); !strings.HasPrefix(got, typ) {
			t.Errorf("a default %s config: %q", typ, got)
		}
	}
}
