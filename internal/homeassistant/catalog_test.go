package homeassistant

import (
	"slices"
	"strings"
	"testing"
)

func topics(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Topic
	}
	return out
}

func snapshotTopics(c *Catalog) []string {
	var out []string
	for m := range c.Snapshot().Messages() {
		out = append(out, m.Topic)
	}
	return out
}

const (
	gwTopics = "homeassistant/binary_sensor/box-1/gatewayd_connectivity/config " +
		"homeassistant/sensor/box-1/gatewayd_buffered/config " +
		"homeassistant/sensor/box-1/gatewayd_sensors_up/config"
)

func TestCatalogObserve(t *testing.T) {
	c := NewCatalog(testConfig())
	if got := strings.Join(snapshotTopics(c), " "); got != gwTopics {
		t.Errorf("before any reading: %s", got)
	}

	m, ok, err := c.Observe("living-room", "temperature", "gatewayd/box-1/living-room/temperature")
	if !ok || err != nil || m.Topic != "homeassistant/sensor/box-1/living-room_temperature/config" {
		t.Fatalf("first reading: %v %v %v", m.Topic, ok, err)
	}
	if _, ok, _ := c.Observe("living-room", "temperature", "gatewayd/box-1/living-room/temperature"); ok {
		t.Error("the same series announced twice")
	}
	m, ok, _ = c.Observe("living-room", "temperature", "elsewhere/t")
	if !ok || decode(t, m)["state_topic"] != "elsewhere/t" {
		t.Errorf("a new topic was not announced: %v %s", ok, m.Payload)
	}
	if _, ok, err := c.Observe("gone", "temperature", "x"); ok || err != nil {
		t.Errorf("a sensor not configured: %v %v", ok, err)
	}
	if _, ok, err := c.Observe("air", "Temp.C", "x"); ok || err == nil {
		t.Errorf("a quantity Home Assistant cannot take in a topic: %v %v", ok, err)
	}
	c.Observe("air", "humidity", "home/air/humidity")
	want := gwTopics + " homeassistant/sensor/box-1/living-room_temperature/config homeassistant/sensor/box-1/air_humidity/config"
	if got := strings.Join(snapshotTopics(c), " "); got != want {
		t.Errorf("snapshot:\n got %s\nwant %s", got, want)
	}
	if n := c.Snapshot().Len(); n < len(snapshotTopics(c)) {
		t.Errorf("Len %d < %d messages", n, len(snapshotTopics(c)))
	}
}

// A series whose discovery topic is already taken is refused, once, and
// the first owner keeps it.
func TestCatalogCollision(t *testing.T) {
	cfg := testConfig()
	cfg.Sensors = append(cfg.Sensors, Sensor{Name: "gatewayd", Topic: "t/{sensor}/{quantity}"},
		Sensor{Name: "a_b", Topic: "t/{sensor}/{quantity}"}, Sensor{Name: "a", Topic: "t/{sensor}/{quantity}"})
	c := NewCatalog(cfg)
	if _, ok, err := c.Observe("gatewayd", "buffered", "t/gatewayd/buffered"); ok || err == nil || !strings.Contains(err.Error(), "gateway's own") {
		t.Errorf("collision with the gateway's entity: %v %v", ok, err)
	}
	if _, ok, err := c.Observe("gatewayd", "buffered", "t/gatewayd/buffered"); ok || err != nil {
		t.Errorf("reported twice: %v %v", ok, err)
	}
	if _, ok, err := c.Observe("a_b", "c", "t/a_b/c"); !ok || err != nil {
		t.Fatalf("a_b/c: %v %v", ok, err)
	}
	if _, ok, err := c.Observe("a", "b_c", "t/a/b_c"); ok || err == nil {
		t.Errorf("a/b_c takes a_b/c's topic: %v %v", ok, err)
	}
	var n int
	for m := range c.Snapshot().Messages() {
		if strings.Contains(m.Topic, "/a_b_c/") {
			n++
			if decode(t, m)["state_topic"] != "t/a_b/c" {
				t.Errorf("the second owner won: %s", m.Payload)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d messages on the contested topic", n)
	}
	c.Reload(cfg)
	if got := snapshotTopics(c); len(got) != 4 {
		t.Errorf("after a reload: %v", got)
	}
}

func TestCatalogReload(t *testing.T) {
	base := testConfig()
	observeAll := func(c *Catalog) {
		for _, s := range c.Config().Sensors {
			for _, q := range []string{"temperature", "humidity"} {
				c.Observe(s.Name, q, StateTopic(s.Topic, c.Config().Gateway, s.Name, q))
			}
		}
	}
	for _, tc := range []struct {
		name    string
		edit    func(*Config)
		cleared []string
		check   func(t *testing.T, c *Catalog)
	}{
		{name: "nothing changed"},
		{
			name: "a sensor removed",
			edit: func(c *Config) { c.Sensors = c.Sensors[:1] },
			cleared: []string{
				"homeassistant/sensor/box-1/air_temperature/config",
				"homeassistant/sensor/box-1/air_humidity/config",
			},
		},
		{
			name: "a sensor added: announced at its first reading, nothing cleared",
			edit: func(c *Config) { c.Sensors = append(c.Sensors, Sensor{Name: "new", Topic: "n/{quantity}"}) },
			check: func(t *testing.T, c *Catalog) {
				if _, ok, _ := c.Observe("new", "temperature", "n/temperature"); !ok {
					t.Error("the added sensor's first reading was not announced")
				}
			},
		},
		{
			name: "a topic changed: announced again with the new topic",
			edit: func(c *Config) { c.Sensors[1].Topic = "garden/{sensor}/{quantity}" },
			check: func(t *testing.T, c *Catalog) {
				for m := range c.Snapshot().Messages() {
					if strings.Contains(m.Topic, "/air_temperature/") && decode(t, m)["state_topic"] != "garden/air/temperature" {
						t.Errorf("state topic not updated: %s", m.Payload)
					}
				}
				if _, ok, _ := c.Observe("air", "temperature", "garden/air/temperature"); ok {
					t.Error("announced again by the next reading")
				}
			},
		},
		{
			name:    "availability turned off: the connectivity entity goes",
			edit:    func(c *Config) { c.Availability = Availability{} },
			cleared: []string{"homeassistant/binary_sensor/box-1/gatewayd_connectivity/config"},
		},
		{
			name: "the prefix changed: everything old is cleared",
			edit: func(c *Config) { c.Prefix = "other" },
			cleared: append(strings.Fields(gwTopics),
				"homeassistant/sensor/box-1/living-room_temperature/config",
				"homeassistant/sensor/box-1/living-room_humidity/config",
				"homeassistant/sensor/box-1/air_temperature/config",
				"homeassistant/sensor/box-1/air_humidity/config"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCatalog(base)
			observeAll(c)
			next := testConfig()
			if tc.edit != nil {
				tc.edit(&next)
			}
			cleared := topics(c.Reload(next))
			if !slices.Equal(cleared, tc.cleared) {
				t.Errorf("cleared:\n got %q\nwant %q", cleared, tc.cleared)
			}
			for _, tp := range snapshotTopics(c) {
				if slices.Contains(cleared, tp) {
					t.Errorf("%s both cleared and announced", tp)
				}
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
