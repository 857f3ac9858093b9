package homeassistant

import (
	"path"
	"reflect"
	"strings"
)

// modelKeys are the keys of a source type's config that say which device
// it reads, in order of preference: rtl433's and modbus's model, iio's and
// w1's device, hwmon's chip, ble's address, modbus's url, exec's command.
var modelKeys = []string{"model", "device", "chip", "address", "url", "command"}

// Model is the device model Home Assistant shows for a sensor: its type
// and what its own keys name ("iio bme280", "w1 28-0316a2791eff",
// "exec read-sensor", "rtl433 Acurite-Tower"), or the type alone. src is
// the type's config (config.Sensor.Source); the keys are found by their
// yaml tags, so that a new source type needs nothing here.
func Model(typ string, src any) string {
	v := reflect.ValueOf(src)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return typ
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return typ
	}
	fields := map[string]reflect.Value{}
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fields[name] = v.Field(i)
	}
	for _, k := range modelKeys {
		f, ok := fields[k]
		if !ok {
			continue
		}
		var s string
		switch {
		case f.Kind() == reflect.String:
			s = f.String()
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String && f.Len() > 0:
			s = path.Base(f.Index(0).String()) // a command: its program
		}
		if s = strings.TrimSpace(s); s != "" {
			return typ + " " + s
		}
	}
	return typ
}
