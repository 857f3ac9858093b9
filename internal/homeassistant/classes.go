package homeassistant

import (
	"strings"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// Components are the Home Assistant entity platforms gatewayd announces;
// they are the {component} level of a discovery topic.
const (
	componentSensor = "sensor"
	componentBinary = "binary_sensor"
)

// entityClass is how one quantity looks in Home Assistant.
type entityClass struct {
	component   string // sensor | binary_sensor
	deviceClass string // "" = none
	// unit is the unit the device class needs. The class is announced only
	// when gatewayd really publishes the quantity in this unit
	// (sensors.Unit), so that a unit and a device class Home Assistant does
	// not accept together can never go out.
	unit string
	// binary sensors: the payloads meaning on and off.
	payloadOn, payloadOff string
	// name replaces the entity name made from the quantity.
	name string
}

// quantityClasses maps gatewayd's quantities to Home Assistant's device
// classes. Which units a device class accepts is Home Assistant's
// DEVICE_CLASS_UNITS (homeassistant/components/sensor/const.py): temperature
// takes UnitOfTemperature (°C, °F, K), humidity and battery only "%",
// pressure and atmospheric_pressure any UnitOfPressure (hPa among them).
// Since 2025 the MQTT sensor refuses a discovery message whose unit is not
// in its device class's set (validate_sensor_state_and_device_class_config
// in homeassistant/components/mqtt/sensor.py raises vol.Invalid), so the
// pairing below is checked against that table in the tests.
//
// A quantity not listed here (an exec program's "co2", an iio channel
// mapped to a name of one's own) is announced as a plain sensor: no device
// class, the unit gatewayd publishes it with (none today), and state_class
// measurement, so Home Assistant still graphs it and keeps statistics.
var quantityClasses = map[string]entityClass{
	sensors.Temperature: {component: componentSensor, deviceClass: "temperature", unit: "°C"},
	sensors.Humidity:    {component: componentSensor, deviceClass: "humidity", unit: "%"},
	// Every pressure gatewayd reads (BME280/BMP280 through iio, rtl_433
	// weather stations) is the air's: Home Assistant's atmospheric_pressure
	// rather than the generic pressure class.
	sensors.Pressure: {component: componentSensor, deviceClass: "atmospheric_pressure", unit: "hPa"},
	// Bluetooth thermometers report their battery in %.
	sensors.Battery: {component: componentSensor, deviceClass: "battery", unit: "%"},
	// rtl_433's battery_ok is 1 (fine) or 0 (low). Home Assistant's battery
	// binary sensor is on when the battery is LOW
	// (homeassistant/components/binary_sensor/__init__.py,
	// BinarySensorDeviceClass.BATTERY: "On means low, Off means normal"),
	// so 0 is on.
	"battery_ok": {component: componentBinary, deviceClass: "battery", payloadOn: "0", payloadOff: "1", name: "Battery"},
}

// classOf returns the entity class of a quantity that gatewayd publishes
// in unit: the listed class when the unit matches, else a plain sensor with
// that unit.
func classOf(quantity, unit string) entityClass {
	c, ok := quantityClasses[quantity]
	switch {
	case !ok:
		return entityClass{component: componentSensor, unit: unit}
	case c.component == componentBinary:
		return c
	case c.unit != unit:
		return entityClass{component: componentSensor, unit: unit}
	}
	return c
}

// entityName is the entity's name in Home Assistant: the quantity, as
// words ("temperature" -> "Temperature", "co2_ppm" -> "Co2 ppm").
func entityName(quantity string) string {
	if c, ok := quantityClasses[quantity]; ok && c.name != "" {
		return c.name
	}
	if quantity == "" {
		return ""
	}
	s := strings.ReplaceAll(quantity, "_", " ")
	return strings.ToUpper(s[:1]) + s[1:]
}
