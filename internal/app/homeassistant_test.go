package app_test

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// haYAML is a gateway with discovery on, custom availability payloads and
// two simulated sensors, one on a topic of its own.
func haYAML(url, interval string) string {
	return baseYAML(url) + fmt.Sprintf(`  availability: {topic: "gatewayd/gw/status", online: up, offline: down}
homeassistant: {discovery: true}
sensors:
  - {name: room, type: simulated, interval: %[1]s, seed: 1}
  - {name: attic, type: simulated, interval: %[1]s, seed: 2, topic: "home/{sensor}/{quantity}"}
`, interval)
}

var haSeries = map[string]string{ // discovery topic -> the topic its readings go to
	"homeassistant/sensor/gw/room_temperature/config":  "gatewayd/gw/room/temperature",
	"homeassistant/sensor/gw/room_humidity/config":     "gatewayd/gw/room/humidity",
	"homeassistant/sensor/gw/attic_temperature/config": "home/attic/temperature",
	"homeassistant/sensor/gw/attic_humidity/config":    "home/attic/humidity",
}

var haGateway = []string{
	"homeassistant/binary_sensor/gw/gatewayd_connectivity/config",
	"homeassistant/sensor/gw/gatewayd_buffered/config",
	"homeassistant/sensor/gw/gatewayd_sensors_up/config",
}

func retainedJSON(t *testing.T, b *testbroker.Broker, topic string) map[string]any {
	t.Helper()
	p, ok := b.Retained(topic)
	if !ok {
		return nil
	}
	var d map[string]any
	if err := json.Unmarshal(p, &d); err != nil {
		t.Fatalf("%s: %v: %s", topic, err, p)
	}
	return d
}

func countOn(b *testbroker.Broker, topic string) int {
	return len(b.Messages(func(tp string) bool { return tp == topic }))
}

// firstIndex is the position of the first message on topic at or after from.
func firstIndex(msgs []testbroker.Message, topic string, from int) int {
	for i := from; i < len(msgs); i++ {
		if msgs[i].Topic == topic {
			return i
		}
	}
	return -1
}

// The daemon announces every sensor and quantity with a retained config
// whose state topic is where the readings really go, before the first
// reading; again on Home Assistant's birth message; and after a broker
// restart that lost everything, before the first reading of the new
// connection. Discovery messages are not readings.
func TestHomeAssistantDiscovery(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, haYAML(b.URL(), "1h"))

	testbroker.Eventually(t, 10*time.Second, "every config retained", func() bool {
		for _, tp := range append(haGateway, mapKeys(haSeries)...) {
			if _, ok := b.Retained(tp); !ok {
				return false
			}
		}
		return true
	})
	msgs := b.Messages(nil)
	for cfgTopic, state := range haSeries {
		c := retainedJSON(t, b, cfgTopic)
		if c["state_topic"] != state || c["availability_topic"] != "gatewayd/gw/status" ||
			c["payload_available"] != "up" || c["payload_not_available"] != "down" || c["value_template"] != "{{ value_json.value }}" {
			t.Errorf("%s: %v", cfgTopic, c)
		}
		// The interval is 1h: expire after 3h and the read timeout.
		if c["expire_after"] != float64(3*3600+5) {
			t.Errorf("%s: expire_after %v", cfgTopic, c["expire_after"])
		}
		ci, ri := firstIndex(msgs, cfgTopic, 0), firstIndex(msgs, state, 0)
		if ri < 0 {
			testbroker.Eventually(t, 10*time.Second, "a reading on "+state, func() bool { return countOn(b, state) > 0 })
			msgs = b.Messages(nil)
			ci, ri = firstIndex(msgs, cfgTopic, 0), firstIndex(msgs, state, 0)
		}
		if ci < 0 || ci > ri {
			t.Errorf("the config on %s (message %d) came after the first reading on %s (message %d)", cfgTopic, ci, state, ri)
		}
	}
	dev := retainedJSON(t, b, "homeassistant/sensor/gw/attic_temperature/config")["device"].(map[string]any)
	if dev["name"] != "attic" || dev["model"] != "simulated" || dev["via_device"] != "gatewayd:gw" {
		t.Errorf("device %v", dev)
	}
	testbroker.Eventually(t, 10*time.Second, "the diagnostics", func() bool {
		p, _ := b.Retained("gatewayd/gw/diagnostics")
		return string(p) == `{"buffered":0,"sensors_up":2,"sensors":2}`
	})

	// Four readings (two sensors, two quantities, read once an hour) and
	// seven configs: only the readings count as published.
	testbroker.Eventually(t, 10*time.Second, "4 readings published", func() bool { return value(d.Metrics.MQTTPublished) == 4 })
	if n := value(d.Metrics.HADiscoveryMessages); n < 7 {
		t.Errorf("gatewayd_homeassistant_discovery_messages_total %v, want >= 7", n)
	}

	// Home Assistant restarts: its birth message brings everything again.
	b.Publish("homeassistant/status", []byte("online"), false, 1)
	testbroker.Eventually(t, 10*time.Second, "configs sent again after the birth message", func() bool {
		for _, tp := range append(haGateway, mapKeys(haSeries)...) {
			if countOn(b, tp) < 2 {
				return false
			}
		}
		return true
	})
	if got := value(d.Metrics.MQTTPublished); got != 4 {
		t.Errorf("published readings %v after the discovery burst, want 4", got)
	}
	if got := value(d.Metrics.ReadingsTaken); got != 4 {
		t.Errorf("readings taken %v: discovery went through the buffer", got)
	}
}

// After a broker restart that lost every retained message, the configs are
// back before the first reading of the new connection; during the outage
// nothing piles up: one burst per connection.
func TestHomeAssistantBrokerRestart(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, haYAML(b.URL(), "50ms"))
	cfgTopic := "homeassistant/sensor/gw/room_temperature/config"
	testbroker.Eventually(t, 10*time.Second, "every config announced", func() bool {
		for _, tp := range append(haGateway, mapKeys(haSeries)...) {
			if countOn(b, tp) == 0 {
				return false
			}
		}
		return true
	})

	b.Stop()
	taken := value(d.Metrics.ReadingsTaken)
	testbroker.Eventually(t, 10*time.Second, "readings buffered during the outage", func() bool {
		return value(d.Metrics.ReadingsTaken) >= taken+20
	})
	before := len(b.Messages(nil))
	sent := value(d.Metrics.HADiscoveryMessages)
	b.Restart()
	testbroker.Eventually(t, 10*time.Second, "announced again after the restart", func() bool {
		_, ok := b.Retained(cfgTopic)
		return ok && value(d.Metrics.MQTTConnects) >= 2
	})
	testbroker.Eventually(t, 10*time.Second, "the buffered readings published", func() bool { return d.Queue.Len() == 0 })
	msgs := b.Messages(nil)
	for c, state := range haSeries {
		ci, ri := firstIndex(msgs, c, before), firstIndex(msgs, state, before)
		if ci < 0 || ri < 0 || ci > ri {
			t.Errorf("after the restart: config on %s at %d, first reading on %s at %d", c, ci, state, ri)
		}
	}
	for _, tp := range append(haGateway, mapKeys(haSeries)...) {
		if n := countOn(b, tp); n != 2 {
			t.Errorf("%s sent %d times over two connections", tp, n)
		}
	}
	if got := value(d.Metrics.HADiscoveryMessages) - sent; got != 7 {
		t.Errorf("%v discovery messages for the reconnect, want 7", got)
	}
}

// A reload that removes a sensor clears its configs (empty retained
// messages); one that adds a sensor announces it.
func TestHomeAssistantReload(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, haYAML(b.URL(), "1h"))
	testbroker.Eventually(t, 10*time.Second, "every config retained", func() bool {
		for tp := range haSeries {
			if _, ok := b.Retained(tp); !ok {
				return false
			}
		}
		return true
	})
	yaml := strings.Replace(haYAML(b.URL(), "1h"), `  - {name: attic, type: simulated, interval: 1h, seed: 2, topic: "home/{sensor}/{quantity}"}`,
		`  - {name: cellar, type: simulated, interval: 1h, seed: 3}`, 1) + "metrics: {listen: '127.0.0.1:0'}\n"
	cfg, err := config.Parse("reload.yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d.ReloadHomeAssistant(cfg) {
		t.Fatal("a restart asked for")
	}
	testbroker.Eventually(t, 10*time.Second, "attic's configs cleared", func() bool {
		_, t1 := b.Retained("homeassistant/sensor/gw/attic_temperature/config")
		_, t2 := b.Retained("homeassistant/sensor/gw/attic_humidity/config")
		return !t1 && !t2
	})
	for _, m := range b.Messages(func(tp string) bool { return strings.Contains(tp, "/attic_") }) {
		if len(m.Payload) == 0 && !m.Retain {
			t.Errorf("the clearing of %s is not retained", m.Topic)
		}
	}
	if _, ok := b.Retained("homeassistant/sensor/gw/room_temperature/config"); !ok {
		t.Error("room's config is gone")
	}
	// The poller of this test still reads the old sensors (the reload of
	// the sensors is core's); a reading of a sensor the announcer knows
	// from the new config is announced. Here: none of cellar yet, so its
	// config must not exist, and attic's readings must not revive attic.
	if _, ok := b.Retained("homeassistant/sensor/gw/cellar_temperature/config"); ok {
		t.Error("cellar announced before any reading of it")
	}
}

func mapKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestHomeAssistantOnMQTT5 runs the discovery tests again with
// broker.protocol 5.
func TestHomeAssistantOnMQTT5(t *testing.T) {
	testProtocol = 5
	defer func() { testProtocol = 4 }()
	t.Run("Discovery", TestHomeAssistantDiscovery)
	t.Run("BrokerRestart", TestHomeAssistantBrokerRestart)
	t.Run("Reload", TestHomeAssistantReload)
}
