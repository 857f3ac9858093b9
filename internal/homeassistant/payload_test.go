package homeassistant

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testConfig is a gateway with a simulated sensor on publish.topic, an iio
// sensor with a topic of its own, and custom availability payloads.
func testConfig() Config {
	return Config{
		Prefix:       "homeassistant",
		Gateway:      "box-1",
		Version:      "1.2.3",
		Format:       "json",
		Availability: Availability{Topic: "gatewayd/box-1/status", Online: "up", Offline: "down"},
		Sensors: []Sensor{
			{Name: "living-room", Model: "simulated", Topic: "gatewayd/{gateway}/{sensor}/{quantity}", QoS: 1, Expire: 60 * time.Second},
			{Name: "air", Model: "iio bme280", Topic: "home/{sensor}/{quantity}", QoS: 0, Expire: 95500 * time.Millisecond},
		},
	}
}

// decoded is a discovery payload as Home Assistant reads it.
type decoded map[string]any

func decode(t *testing.T, m Message) decoded {
	t.Helper()
	var d decoded
	if err := json.Unmarshal(m.Payload, &d); err != nil {
		t.Fatalf("%s: payload is not JSON: %v: %s", m.Topic, err, m.Payload)
	}
	return d
}

// checkAgainstHA checks one discovery message against what Home Assistant's
// code accepts: the topic, every key (top level, device, origin) in its
// schema, no abbreviation standing for another key, no object_id, the unit
// allowed for the device class, a valid default entity id.
func checkAgainstHA(t *testing.T, prefix string, m Message) decoded {
	t.Helper()
	rest, ok := strings.CutPrefix(m.Topic, prefix+"/")
	if !ok {
		t.Fatalf("%s: not under the prefix %s", m.Topic, prefix)
	}
	g := haTopicMatcher.FindStringSubmatch(rest)
	if g == nil {
		t.Fatalf("%s: Home Assistant's TOPIC_MATCHER does not match %q", m.Topic, rest)
	}
	component := g[1]
	schema, ok := haSchemaKeys[component]
	if !ok {
		t.Fatalf("%s: component %q is not one gatewayd announces", m.Topic, component)
	}
	d := decode(t, m)
	checkKeys(t, m.Topic, "", d, schema, haAbbreviations)
	dev, ok := d["device"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no device block", m.Topic)
	}
	checkKeys(t, m.Topic, "device.", dev, haDeviceKeys, haDeviceAbbreviations)
	if ids, _ := dev["identifiers"].([]any); len(ids) == 0 {
		t.Errorf("%s: the device has no identifiers (Home Assistant refuses it)", m.Topic)
	}
	org, ok := d["origin"].(map[string]any)
	if !ok {
		t.Fatalf("%s: no origin block", m.Topic)
	}
	checkKeys(t, m.Topic, "origin.", org, haOriginKeys, haOriginAbbreviations)
	if org["name"] != "gatewayd" || org["support_url"] == nil {
		t.Errorf("%s: origin %v", m.Topic, org)
	}
	if _, has := d["object_id"]; has {
		t.Errorf("%s: object_id is deprecated by Home Assistant", m.Topic)
	}
	for _, k := range []string{"name", "unique_id", "state_topic"} {
		if s, _ := d[k].(string); s == "" {
			t.Errorf("%s: %s is missing", m.Topic, k)
		}
	}
	if id, has := d["default_entity_id"].(string); has {
		if !haValidEntityID.MatchString(id) || !strings.HasPrefix(id, component+".") {
			t.Errorf("%s: default_entity_id %q is not a valid %s entity id", m.Topic, id, component)
		}
	}
	dc, _ := d["device_class"].(string)
	unit, hasUnit := d["unit_of_measurement"].(string)
	switch component {
	case "sensor":
		if dc != "" {
			allowed, known := haDeviceClassUnits[dc]
			if !known || !hasUnit || !slices.Contains(allowed, unit) {
				t.Errorf("%s: unit %q with device class %q: Home Assistant refuses it (allowed: %v)", m.Topic, unit, dc, allowed)
			}
		}
		if sc, has := d["state_class"]; has && dc != "" && (sc != "measurement" || !slices.Contains(haMeasurementClasses, dc)) {
			t.Errorf("%s: state class %v with device class %s", m.Topic, sc, dc)
		}
	case "binary_sensor":
		if dc != "" && !slices.Contains(haBinaryDeviceClasses, dc) {
			t.Errorf("%s: binary sensor device class %q", m.Topic, dc)
		}
		if hasUnit {
			t.Errorf("%s: a binary sensor has no unit", m.Topic)
		}
	}
	if ec, has := d["entity_category"].(string); has && !slices.Contains(haEntityCategories, ec) {
		t.Errorf("%s: entity_category %q", m.Topic, ec)
	}
	if ea, has := d["expire_after"].(float64); has && (ea <= 0 || ea != float64(int64(ea))) {
		t.Errorf("%s: expire_after %v is not a positive whole number of seconds", m.Topic, ea)
	}
	return d
}

func checkKeys(t *testing.T, topic, where string, d map[string]any, schema, abbreviations []string) {
	t.Helper()
	for k := range d {
		if slices.Contains(abbreviations, k) {
			t.Errorf("%s: key %s%s is an abbreviation Home Assistant expands to another key", topic, where, k)
		}
		if !slices.Contains(schema, k) {
			t.Errorf("%s: key %s%s is not in Home Assistant's schema", topic, where, k)
		}
	}
}

func TestSeriesPayload(t *testing.T) {
	cfg := testConfig()
	m := cfg.seriesEntity(&cfg.Sensors[0], "temperature", "°C", "gatewayd/box-1/living-room/temperature")
	if want := "homeassistant/sensor/box-1/living-room_temperature/config"; m.Topic != want {
		t.Errorf("topic %s, want %s", m.Topic, want)
	}
	got := checkAgainstHA(t, cfg.Prefix, m)
	want := decoded{
		"name":                  "Temperature",
		"unique_id":             "gatewayd:box-1:living-room:temperature",
		"default_entity_id":     "sensor.box_1_living_room_temperature",
		"state_topic":           "gatewayd/box-1/living-room/temperature",
		"value_template":        "{{ value_json.value }}",
		"device_class":          "temperature",
		"unit_of_measurement":   "°C",
		"state_class":           "measurement",
		"expire_after":          float64(60),
		"qos":                   float64(1),
		"availability_topic":    "gatewayd/box-1/status",
		"payload_available":     "up",
		"payload_not_available": "down",
		"device": map[string]any{
			"identifiers":  []any{"gatewayd:box-1:living-room"},
			"name":         "living-room",
			"manufacturer": "gatewayd",
			"model":        "simulated",
			"via_device":   "gatewayd:box-1",
		},
		"origin": map[string]any{"name": "gatewayd", "sw_version": "1.2.3", "support_url": "https://github.com/gatewayd/gatewayd"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("payload\n got %v\nwant %v", got, want)
	}
}

func TestSeriesPayloadVariants(t *testing.T) {
	for _, tc := range []struct {
		name     string
		edit     func(*Config)
		sensor   int
		quantity string
		unit     string
		topic    string // the discovery topic
		want     map[string]any
		absent   []string
	}{
		{
			name: "own topic, QoS 0, expire rounded up", sensor: 1, quantity: "humidity", unit: "%",
			topic:  "homeassistant/sensor/box-1/air_humidity/config",
			want:   map[string]any{"state_topic": "home/air/humidity", "device_class": "humidity", "unit_of_measurement": "%", "expire_after": float64(96)},
			absent: []string{"qos"},
		},
		{
			name: "pressure is the air's", sensor: 1, quantity: "pressure", unit: "hPa",
			topic: "homeassistant/sensor/box-1/air_pressure/config",
			want:  map[string]any{"device_class": "atmospheric_pressure", "unit_of_measurement": "hPa", "name": "Pressure"},
		},
		{
			name: "format value: no template", edit: func(c *Config) { c.Format = "value" }, quantity: "temperature", unit: "°C",
			topic:  "homeassistant/sensor/box-1/living-room_temperature/config",
			absent: []string{"value_template"},
		},
		{
			name: "an exec quantity: no device class, no unit, still measured", quantity: "co2_ppm", unit: "",
			topic:  "homeassistant/sensor/box-1/living-room_co2_ppm/config",
			want:   map[string]any{"name": "Co2 ppm", "state_class": "measurement", "value_template": "{{ value_json.value }}"},
			absent: []string{"device_class", "unit_of_measurement"},
		},
		{
			name: "battery without its unit: no device class", quantity: "battery", unit: "",
			topic:  "homeassistant/sensor/box-1/living-room_battery/config",
			absent: []string{"device_class", "unit_of_measurement"},
		},
		{
			name: "battery in %", quantity: "battery", unit: "%",
			topic: "homeassistant/sensor/box-1/living-room_battery/config",
			want:  map[string]any{"device_class": "battery", "unit_of_measurement": "%"},
		},
		{
			name: "battery_ok: a battery binary sensor, on when low", quantity: "battery_ok", unit: "",
			topic:  "homeassistant/binary_sensor/box-1/living-room_battery_ok/config",
			want:   map[string]any{"device_class": "battery", "payload_on": "0", "payload_off": "1", "name": "Battery", "default_entity_id": "binary_sensor.box_1_living_room_battery_ok"},
			absent: []string{"unit_of_measurement", "state_class"},
		},
		{
			name: "no availability topic: no availability", edit: func(c *Config) { c.Availability = Availability{} }, quantity: "temperature", unit: "°C",
			topic:  "homeassistant/sensor/box-1/living-room_temperature/config",
			absent: []string{"availability_topic", "payload_available", "payload_not_available"},
		},
		{
			name: "no expiry", edit: func(c *Config) { c.Sensors[0].Expire = 0 }, quantity: "temperature", unit: "°C",
			topic:  "homeassistant/sensor/box-1/living-room_temperature/config",
			absent: []string{"expire_after"},
		},
		{
			name: "a quantity's own expiry (deadband)", quantity: "temperature", unit: "°C",
			edit: func(c *Config) {
				c.Sensors[0].ExpireOf = map[string]time.Duration{"temperature": 30*time.Minute + 5*time.Second}
			},
			topic: "homeassistant/sensor/box-1/living-room_temperature/config",
			want:  map[string]any{"expire_after": float64(1805)},
		},
		{
			name: "another quantity's deadband changes nothing", quantity: "humidity", unit: "%",
			edit:  func(c *Config) { c.Sensors[0].ExpireOf = map[string]time.Duration{"temperature": 0} },
			topic: "homeassistant/sensor/box-1/living-room_humidity/config",
			want:  map[string]any{"expire_after": float64(60)},
		},
		{
			name: "another prefix", edit: func(c *Config) { c.Prefix = "ha/discovery" }, quantity: "temperature", unit: "°C",
			topic: "ha/discovery/sensor/box-1/living-room_temperature/config",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			if tc.edit != nil {
				tc.edit(&cfg)
			}
			s := &cfg.Sensors[tc.sensor]
			m := cfg.seriesEntity(s, tc.quantity, tc.unit, StateTopic(s.Topic, cfg.Gateway, s.Name, tc.quantity))
			if m.Topic != tc.topic {
				t.Errorf("topic %s, want %s", m.Topic, tc.topic)
			}
			d := checkAgainstHA(t, cfg.Prefix, m)
			for k, v := range tc.want {
				if !reflect.DeepEqual(d[k], v) {
					t.Errorf("%s = %#v, want %#v", k, d[k], v)
				}
			}
			for _, k := range tc.absent {
				if v, has := d[k]; has {
					t.Errorf("%s = %v, want none", k, v)
				}
			}
		})
	}
}

func TestGatewayEntities(t *testing.T) {
	cfg := testConfig()
	msgs := cfg.gatewayEntities()
	byTopic := map[string]decoded{}
	for _, m := range msgs {
		byTopic[m.Topic] = checkAgainstHA(t, cfg.Prefix, m)
	}
	conn := byTopic["homeassistant/binary_sensor/box-1/gatewayd_connectivity/config"]
	want := decoded{
		"name": "Connectivity", "unique_id": "gatewayd:box-1:connectivity", "default_entity_id": "binary_sensor.box_1_connectivity",
		"state_topic": "gatewayd/box-1/status", "device_class": "connectivity", "entity_category": "diagnostic",
		"payload_on": "up", "payload_off": "down", "qos": float64(1),
		"device": map[string]any{"identifiers": []any{"gatewayd:box-1"}, "name": "box-1", "manufacturer": "gatewayd", "model": "gatewayd", "sw_version": "1.2.3"},
		"origin": map[string]any{"name": "gatewayd", "sw_version": "1.2.3", "support_url": "https://github.com/gatewayd/gatewayd"},
	}
	if !reflect.DeepEqual(conn, want) {
		t.Errorf("connectivity\n got %v\nwant %v", conn, want)
	}
	for topic, key := range map[string]string{
		"homeassistant/sensor/box-1/gatewayd_buffered/config":   "buffered",
		"homeassistant/sensor/box-1/gatewayd_sensors_up/config": "sensors_up",
	} {
		d := byTopic[topic]
		if d == nil {
			t.Fatalf("no %s in %v", topic, slices.Collect(maps.Keys(byTopic)))
		}
		if d["state_topic"] != "gatewayd/box-1/diagnostics" || d["value_template"] != "{{ value_json."+key+" }}" ||
			d["entity_category"] != "diagnostic" || d["availability_topic"] != "gatewayd/box-1/status" {
			t.Errorf("%s: %v", topic, d)
		}
	}
	if len(msgs) != 3 {
		t.Errorf("%d gateway entities, want 3", len(msgs))
	}

	cfg.Availability = Availability{}
	if got := cfg.gatewayEntities(); len(got) != 2 || strings.Contains(got[0].Topic, "connectivity") {
		t.Errorf("without availability: %v", got)
	}
}

func TestDiagnosticsMessage(t *testing.T) {
	cfg := testConfig()
	m := cfg.DiagnosticsMessage(Diagnostics{Buffered: 12, SensorsUp: 1, Sensors: 2})
	if m.Topic != "gatewayd/box-1/diagnostics" || string(m.Payload) != `{"buffered":12,"sensors_up":1,"sensors":2}` {
		t.Errorf("%s %s", m.Topic, m.Payload)
	}
}

// Every unique id and every device identifier is distinct, within one
// gateway and across two gateways whose names could be confused when
// joined with '_'.
func TestIDsUnique(t *testing.T) {
	seen := map[string]string{}
	add := func(kind, id, topic string) {
		if prev, dup := seen[kind+" "+id]; dup && prev != topic {
			t.Errorf("%s %q of %s is also %s's", kind, id, topic, prev)
		}
		seen[kind+" "+id] = topic
	}
	for _, gw := range []string{"a_b", "a"} {
		cfg := Config{Prefix: "homeassistant", Gateway: gw, Format: "json", Availability: Availability{Topic: "s", Online: "1", Offline: "0"},
			Sensors: []Sensor{{Name: "c", Topic: "{gateway}/{sensor}/{quantity}"}, {Name: "b_c", Topic: "{gateway}/{sensor}/{quantity}"}}}
		c := NewCatalog(cfg)
		for _, s := range cfg.Sensors {
			for _, q := range []string{"temperature", "humidity", "x_y", "y"} {
				if _, _, err := c.Observe(s.Name, q, StateTopic(s.Topic, gw, s.Name, q)); err != nil {
					t.Logf("refused: %v", err) // a_b_c... collisions within one gateway are refused, not merged
				}
			}
		}
		snap := c.Snapshot()
		for m := range snap.Messages() {
			d := checkAgainstHA(t, cfg.Prefix, m)
			add("unique_id", d["unique_id"].(string), m.Topic)
			dev := d["device"].(map[string]any)
			add("device", fmt.Sprint(dev["identifiers"]), fmt.Sprint(gw, "/", dev["name"]))
		}
	}
}

func TestEntityID(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"box-1", "living-room", "temperature"}, "sensor.box_1_living_room_temperature"},
		{[]string{"Box_", "__x", "y"}, "sensor.box_x_y"},
		{[]string{"-", "--"}, ""},
		{[]string{"GW", "a--b", "battery_ok"}, "sensor.gw_a_b_battery_ok"},
	} {
		got := entityID("sensor", tc.parts...)
		if got != tc.want {
			t.Errorf("entityID(%q) = %q, want %q", tc.parts, got, tc.want)
		}
		if got != "" && !haValidEntityID.MatchString(got) {
			t.Errorf("entityID(%q) = %q: not a valid entity id", tc.parts, got)
		}
	}
}

func TestExpireAfter(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		interval, timeout, heartbeat time.Duration
		deadband                     bool
		stale, want                  time.Duration
	}{
		{interval: 10 * s, timeout: 5 * s, want: 35 * s},
		{interval: 200 * time.Millisecond, timeout: 200 * time.Millisecond, want: 30 * s}, // at least 30 s
		{interval: time.Minute, timeout: 5 * s, want: 185 * s},
		{interval: 10 * s, timeout: 5 * s, deadband: true, want: 0}, // a steady value is never published again
		{interval: 10 * s, timeout: 5 * s, deadband: true, heartbeat: 10 * time.Minute, want: 30*time.Minute + 5*s},
		{interval: 0, timeout: 5 * s, stale: 15 * time.Minute, want: 15 * time.Minute}, // push sensor
		{interval: 0, timeout: 5 * s, want: 0},
	} {
		if got := ExpireAfter(tc.interval, tc.timeout, tc.heartbeat, tc.deadband, tc.stale); got != tc.want {
			t.Errorf("ExpireAfter(%v, %v, %v, %v, %v) = %v, want %v", tc.interval, tc.timeout, tc.heartbeat, tc.deadband, tc.stale, got, tc.want)
		}
	}
}

// The pairings of quantityClasses are ones Home Assistant accepts.
func TestQuantityClassesAgainstHA(t *testing.T) {
	for q, c := range quantityClasses {
		switch c.component {
		case componentSensor:
			if !slices.Contains(haDeviceClassUnits[c.deviceClass], c.unit) {
				t.Errorf("%s: unit %q is not allowed with device class %q", q, c.unit, c.deviceClass)
			}
			if !slices.Contains(haMeasurementClasses, c.deviceClass) {
				t.Errorf("%s: device class %q does not allow state_class measurement", q, c.deviceClass)
			}
		case componentBinary:
			if !slices.Contains(haBinaryDeviceClasses, c.deviceClass) || c.payloadOn == "" || c.payloadOff == "" {
				t.Errorf("%s: %+v", q, c)
			}
		default:
			t.Errorf("%s: component %q", q, c.component)
		}
	}
}
