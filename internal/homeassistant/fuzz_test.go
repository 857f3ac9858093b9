package homeassistant

import (
	"encoding/json"
	"strings"
	"testing"
)

// Whatever the names (they come from a config file and from what a source
// returns), a discovery message is valid JSON on a topic Home Assistant
// accepts, or it is refused with an error.
func FuzzObserve(f *testing.F) {
	f.Add("box-1", "living-room", "temperature", "gatewayd/{gateway}/{sensor}/{quantity}")
	f.Add("Box_2", "a_b", "battery_ok", "{sensor}")
	f.Add("gw", "s", "q\"}{", "x/\u00b0C/{quantity}")
	f.Fuzz(func(t *testing.T, gateway, sensor, quantity, tmpl string) {
		cfg := Config{Prefix: "homeassistant", Gateway: gateway, Format: "json",
			Availability: Availability{Topic: "s", Online: "on\"", Offline: "off"},
			Sensors:      []Sensor{{Name: sensor, Topic: tmpl, Model: quantity}}}
		c := NewCatalog(cfg)
		m, ok, err := c.Observe(sensor, quantity, StateTopic(tmpl, gateway, sensor, quantity))
		if err != nil || !ok {
			return
		}
		var d map[string]any
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatalf("invalid JSON: %v: %s", err, m.Payload)
		}
		if ValidID(gateway) {
			rest := strings.TrimPrefix(m.Topic, "homeassistant/")
			if !haTopicMatcher.MatchString(rest) {
				t.Fatalf("topic %q does not match Home Assistant's pattern", m.Topic)
			}
		}
		if id, has := d["default_entity_id"].(string); has && !haValidEntityID.MatchString(id) {
			t.Fatalf("default_entity_id %q", id)
		}
	})
}
