// Package homeassistant turns gatewayd's resolved config into Home
// Assistant MQTT discovery messages (topics and retained payloads) and
// knows which to send, send again and clear.
//
// The payloads follow Home Assistant's own code, which is the reference for
// what it accepts: the discovery topic pattern and the abbreviation
// handling of homeassistant/components/mqtt/discovery.py, the schemas of
// mqtt/sensor.py, mqtt/binary_sensor.py, mqtt/config.py (MQTT_RO_SCHEMA) and
// mqtt/schemas.py (MQTT_ENTITY_COMMON_SCHEMA, the device and origin
// schemas), and the units each device class accepts in
// homeassistant/components/sensor/const.py. Only full key names are used,
// never abbreviations.
//
// Announcer (announcer.go) is the running part: it sends the messages after
// every connect, again when Home Assistant announces itself on
// {prefix}/status, and clears the configs of sensors removed at a reload.
package homeassistant

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Config is what the discovery messages are made of: the parts of
// gatewayd's resolved config that Home Assistant sees.
type Config struct {
	Prefix  string // discovery prefix (homeassistant.prefix)
	Gateway string // gateway.id
	Version string // gatewayd's version: the origin's and the gateway device's sw_version
	Format  string // publish.format: json | value
	// Availability is broker.availability; Topic "" means gatewayd
	// publishes none, and the entities then carry no availability.
	Availability Availability
	Sensors      []Sensor
}

// Availability is the retained online/offline topic gatewayd keeps.
type Availability struct {
	Topic, Online, Offline string
}

// Sensor is one configured sensor: a device in Home Assistant.
type Sensor struct {
	Name  string
	Model string // the source, e.g. "iio bme280"
	// Topic is the sensor's topic template (its own topic, or
	// publish.topic) with {gateway}, {sensor} and {quantity}.
	Topic string
	QoS   byte // the QoS its readings are published with
	// Expire is how long after its last reading Home Assistant shows the
	// sensor's entities as unavailable (expire_after); 0: never.
	// ExpireOf overrides it for some quantities (those with a deadband).
	Expire   time.Duration
	ExpireOf map[string]time.Duration
}

// expire is the expiry of one quantity of the sensor.
func (s *Sensor) expire(quantity string) time.Duration {
	if d, ok := s.ExpireOf[quantity]; ok {
		return d
	}
	return s.Expire
}

// Message is one discovery message: retained, at QoS 1. An empty payload
// removes what the topic announced.
type Message struct {
	Topic   string
	Payload []byte
}

// Diagnostics is the gateway's own state, shown by its diagnostic
// entities. It is published, retained, on DiagnosticsTopic.
type Diagnostics struct {
	Buffered  int `json:"buffered"`   // readings waiting in the buffer
	SensorsUp int `json:"sensors_up"` // sensors whose last read succeeded
	Sensors   int `json:"sensors"`    // sensors configured
}

// The origin block names the program that sent a discovery message
// (MQTT_ORIGIN_INFO_SCHEMA in mqtt/schemas.py: name, sw_version, support_url).
const (
	originName = "gatewayd"
	supportURL = "https://github.com/gatewayd/gatewayd"
	// manufacturer of the gateway and of every sensor device: the device
	// block describes what gatewayd knows, which is the source, not the
	// chip's maker.
	manufacturer = "gatewayd"
)

// DiagnosticsTopic is where the gateway's Diagnostics are published.
func (c *Config) DiagnosticsTopic() string { return "gatewayd/" + c.Gateway + "/diagnostics" }

// StatusTopic is Home Assistant's birth and last-will topic; "online" on it
// means Home Assistant (re)started and must be told everything again.
func (c *Config) StatusTopic() string { return c.Prefix + "/status" }

// configTopic is {prefix}/{component}/{gateway}/{objectID}/config: the
// gateway id is Home Assistant's node_id.
func (c *Config) configTopic(component, objectID string) string {
	return c.Prefix + "/" + component + "/" + c.Gateway + "/" + objectID + "/config"
}

// idPattern is what Home Assistant accepts as node_id and object_id in a
// discovery topic (TOPIC_MATCHER in mqtt/discovery.py); a config on any
// other topic is dropped with only a warning in Home Assistant's log.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// ValidID reports whether s may be used as a node_id or object_id of a
// discovery topic: the gateway id and, joined with a quantity, a sensor
// name.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// StateTopic fills {gateway}, {sensor} and {quantity} into a topic
// template, as the poller does for every reading.
func StateTopic(tmpl, gateway, sensor, quantity string) string {
	return strings.NewReplacer("{gateway}", gateway, "{sensor}", sensor, "{quantity}", quantity).Replace(tmpl)
}

// entity is a sensor or binary_sensor discovery payload. Every key is in
// Home Assistant's discovery schema of the platform (mqtt/sensor.py and
// mqtt/binary_sensor.py, built on MQTT_RO_SCHEMA and
// MQTT_ENTITY_COMMON_SCHEMA); the schemas drop unknown top-level keys
// silently (extra=REMOVE_EXTRA), but the tests check every key against them
// so that none is lost. object_id is deprecated by Home Assistant and never
// sent; default_entity_id replaces it.
type entity struct {
	Name              string `json:"name"`
	UniqueID          string `json:"unique_id"`
	DefaultEntityID   string `json:"default_entity_id,omitempty"`
	StateTopic        string `json:"state_topic"`
	ValueTemplate     string `json:"value_template,omitempty"`
	DeviceClass       string `json:"device_class,omitempty"`
	UnitOfMeasurement string `json:"unit_of_measurement,omitempty"`
	StateClass        string `json:"state_class,omitempty"`
	EntityCategory    string `json:"entity_category,omitempty"`
	PayloadOn         string `json:"payload_on,omitempty"`
	PayloadOff        string `json:"payload_off,omitempty"`
	ExpireAfter       int64  `json:"expire_after,omitempty"`
	QoS               byte   `json:"qos,omitempty"`
	// availability_topic with its payloads: the single-topic form of
	// MQTT_AVAILABILITY_SCHEMA in mqtt/schemas.py.
	AvailabilityTopic   string  `json:"availability_topic,omitempty"`
	PayloadAvailable    string  `json:"payload_available,omitempty"`
	PayloadNotAvailable string  `json:"payload_not_available,omitempty"`
	Device              *device `json:"device"`
	Origin              origin  `json:"origin"`
}

// device is MQTT_ENTITY_DEVICE_INFO_SCHEMA's keys that gatewayd fills. That
// schema is strict: an unknown key inside it makes Home Assistant refuse
// the whole message.
type device struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Manufacturer string   `json:"manufacturer"`
	Model        string   `json:"model"`
	SWVersion    string   `json:"sw_version,omitempty"`
	ViaDevice    string   `json:"via_device,omitempty"`
}

// origin is MQTT_ORIGIN_INFO_SCHEMA (strict too).
type origin struct {
	Name       string `json:"name"`
	SWVersion  string `json:"sw_version,omitempty"`
	SupportURL string `json:"support_url"`
}

// gatewayIdentifier is the gateway device's identifier; the sensors name
// it as their via_device. Identifiers and unique ids join their parts with
// ':', which no gateway id, sensor name or quantity may contain, so that
// two different parts can never make the same id ("a_b"+"c" and "a"+"b_c"
// would with '_').
func (c *Config) gatewayIdentifier() string { return "gatewayd:" + c.Gateway }

func (c *Config) origin() origin {
	return origin{Name: originName, SWVersion: c.Version, SupportURL: supportURL}
}

func (c *Config) gatewayDevice() *device {
	return &device{
		Identifiers:  []string{c.gatewayIdentifier()},
		Name:         c.Gateway,
		Manufacturer: manufacturer,
		Model:        "gatewayd",
		SWVersion:    c.Version,
	}
}

func (c *Config) sensorDevice(s *Sensor) *device {
	return &device{
		Identifiers:  []string{c.gatewayIdentifier() + ":" + s.Name},
		Name:         s.Name,
		Manufacturer: manufacturer,
		Model:        s.Model,
		ViaDevice:    c.gatewayIdentifier(),
	}
}

// availability fills the availability keys: gatewayd's own topic and
// payloads, custom ones included.
func (c *Config) availability(e *entity) {
	if a := c.Availability; a.Topic != "" {
		e.AvailabilityTopic, e.PayloadAvailable, e.PayloadNotAvailable = a.Topic, a.Online, a.Offline
	}
}

// jsonValueTemplate takes the value out of a json reading
// ({"sensor":..,"value":21.53,...}); a value payload is the number alone
// and needs none.
const jsonValueTemplate = "{{ value_json.value }}"

// The gateway's own entities, by object id. The object ids of the sensors'
// entities are {sensor}_{quantity}; a sensor named "gatewayd" with a
// quantity "buffered" would collide, and the Catalog then keeps the
// gateway's (see Catalog.Observe).
const (
	objConnectivity = "gatewayd_connectivity"
	objBuffered     = "gatewayd_buffered"
	objSensorsUp    = "gatewayd_sensors_up"
)

// gatewayEntities are the gateway device's diagnostic entities: a
// connectivity binary sensor that reads the availability topic itself
// (present only when gatewayd has one), and the buffered readings and
// sensors up from DiagnosticsTopic.
func (c *Config) gatewayEntities() []Message {
	var out []Message
	if a := c.Availability; a.Topic != "" {
		// No availability of its own: that would turn it unavailable
		// instead of off exactly when it has something to say.
		out = append(out, c.message(componentBinary, objConnectivity, &entity{
			Name:            "Connectivity",
			UniqueID:        c.gatewayIdentifier() + ":connectivity",
			DefaultEntityID: entityID(componentBinary, c.Gateway, "connectivity"),
			StateTopic:      a.Topic,
			DeviceClass:     "connectivity",
			EntityCategory:  "diagnostic",
			PayloadOn:       a.Online,
			PayloadOff:      a.Offline,
			QoS:             1,
		}))
	}
	for _, d := range []struct{ obj, name, key, unit string }{
		{objBuffered, "Buffered readings", "buffered", "readings"},
		{objSensorsUp, "Sensors up", "sensors_up", "sensors"},
	} {
		e := &entity{
			Name:              d.name,
			UniqueID:          c.gatewayIdentifier() + ":" + d.key,
			DefaultEntityID:   entityID(componentSensor, c.Gateway, strings.ToLower(strings.ReplaceAll(d.name, " ", "_"))),
			StateTopic:        c.DiagnosticsTopic(),
			ValueTemplate:     "{{ value_json." + d.key + " }}",
			UnitOfMeasurement: d.unit,
			StateClass:        "measurement",
			EntityCategory:    "diagnostic",
			QoS:               1,
		}
		c.availability(e)
		out = append(out, c.message(componentSensor, d.obj, e))
	}
	return out
}

// seriesEntity is the discovery message of one sensor's one quantity,
// whose readings go to stateTopic.
func (c *Config) seriesEntity(s *Sensor, quantity, unit, stateTopic string) Message {
	cl := classOf(quantity, unit)
	e := &entity{
		Name:            entityName(quantity),
		UniqueID:        c.gatewayIdentifier() + ":" + s.Name + ":" + quantity,
		DefaultEntityID: entityID(cl.component, c.Gateway, s.Name, quantity),
		StateTopic:      stateTopic,
		DeviceClass:     cl.deviceClass,
		QoS:             s.QoS,
	}
	if c.Format != "value" {
		e.ValueTemplate = jsonValueTemplate
	}
	if cl.component == componentBinary {
		e.PayloadOn, e.PayloadOff = cl.payloadOn, cl.payloadOff
	} else {
		e.UnitOfMeasurement = cl.unit
		// Every device class used here allows measurement
		// (DEVICE_CLASS_STATE_CLASSES in sensor/const.py); it makes Home
		// Assistant keep long-term statistics.
		e.StateClass = "measurement"
	}
	if d := s.expire(quantity); d > 0 {
		e.ExpireAfter = int64(math.Ceil(d.Seconds()))
	}
	c.availability(e)
	e.Device = c.sensorDevice(s)
	return c.message(cl.component, s.Name+"_"+quantity, e)
}

// message renders e as the config on its discovery topic.
func (c *Config) message(component, objectID string, e *entity) Message {
	if e.Device == nil {
		e.Device = c.gatewayDevice()
	}
	e.Origin = c.origin()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep "°C" and templates readable; both are valid JSON either way
	if err := enc.Encode(e); err != nil {
		panic(fmt.Sprintf("homeassistant: encoding a discovery payload: %v", err)) // only strings and ints: cannot fail
	}
	return Message{Topic: c.configTopic(component, objectID), Payload: bytes.TrimRight(b.Bytes(), "\n")}
}

// DiagnosticsMessage is the retained state of the gateway's diagnostic
// entities.
func (c *Config) DiagnosticsMessage(d Diagnostics) Message {
	b, _ := json.Marshal(d) // three ints
	return Message{Topic: c.DiagnosticsTopic(), Payload: b}
}

// entityID is the entity id gatewayd suggests (default_entity_id):
// {platform}.{gateway}_{sensor}_{quantity}, slugged as Home Assistant's
// valid_entity_id wants it: lower case a-z, 0-9 and single '_', none at
// either end. Home Assistant uses it only when it first adds the entity; a
// rename in its UI stays.
func entityID(platform string, parts ...string) string {
	var b []byte
	for _, r := range strings.ToLower(strings.Join(parts, "_")) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b = append(b, byte(r))
		} else if len(b) > 0 && b[len(b)-1] != '_' {
			b = append(b, '_')
		}
	}
	slug := strings.TrimRight(string(b), "_")
	if slug == "" {
		return ""
	}
	return platform + "." + slug
}

// ExpireAfter is how long after a quantity's last reading Home Assistant
// should show it as unavailable: three missed periods plus the read
// timeout, at least 30 s, so that a late read or a reconnect does not make
// it flicker. The period is the interval, or for a quantity with a deadband
// the heartbeat (readings within the deadband are not published at all;
// without a heartbeat a steady value may never be published again, so
// nothing expires). A push sensor (rtl433, ble) has stale_after, which already
// says how long silence is normal, and uses it as it is. 0 means never.
func ExpireAfter(interval, timeout, heartbeat time.Duration, deadband bool, staleAfter time.Duration) time.Duration {
	if staleAfter > 0 {
		return staleAfter
	}
	period := interval
	if deadband {
		if heartbeat <= 0 {
			return 0
		}
		period = max(interval, heartbeat)
	}
	if period <= 0 {
		return 0
	}
	return max(3*period+timeout, 30*time.Second)
}
