package app_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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

// A reload (SIGHUP) that removes a sensor clears its configs (empty
// retained messages); one that adds a sensor announces it before its first
// reading. A new prefix moves everything, and Home Assistant's status topic
// with it. Turning discovery off needs a restart.
func TestHomeAssistantReload(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	yaml := haYAML(b.URL(), "200ms")
	d := startDaemon(t, yaml)
	allRetained := func(topics ...string) func() bool {
		return func() bool {
			for _, tp := range topics {
				if _, ok := b.Retained(tp); !ok {
					return false
				}
			}
			return true
		}
	}
	testbroker.Eventually(t, 10*time.Second, "every config retained", allRetained(mapKeys(haSeries)...))

	attic := `  - {name: attic, type: simulated, interval: 200ms, seed: 2, topic: "home/{sensor}/{quantity}"}`
	cellar := `  - {name: cellar, type: simulated, interval: 200ms, seed: 3}`
	before := len(b.Messages(nil))
	if err := d.reload(t, strings.Replace(yaml, attic, cellar, 1)); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "attic's configs cleared", func() bool {
		_, t1 := b.Retained("homeassistant/sensor/gw/attic_temperature/config")
		_, t2 := b.Retained("homeassistant/sensor/gw/attic_humidity/config")
		return !t1 && !t2
	})
	// From the first clear of a topic on, the topic only gets empty retained
	// messages: nothing announces attic again. (Counting from a message
	// index taken before the reload would race with the broker, which
	// holds a retained message before it records it.)
	cleared := map[string]bool{}
	for _, m := range b.Messages(nil)[before:] {
		if !strings.Contains(m.Topic, "/attic_") {
			continue
		}
		empty := len(m.Payload) == 0 && m.Retain
		if cleared[m.Topic] && !empty {
			t.Errorf("after the reload cleared it, %s got %q (retained %v), want only empty retained messages", m.Topic, m.Payload, m.Retain)
		}
		cleared[m.Topic] = cleared[m.Topic] || empty
	}
	for _, q := range []string{"temperature", "humidity"} {
		if tp := "homeassistant/sensor/gw/attic_" + q + "/config"; !cleared[tp] {
			t.Errorf("%s was not cleared by an empty retained message", tp)
		}
	}
	cellarCfg := "homeassistant/sensor/gw/cellar_temperature/config"
	testbroker.Eventually(t, 10*time.Second, "cellar announced", allRetained(cellarCfg, "homeassistant/sensor/gw/cellar_humidity/config",
		"homeassistant/sensor/gw/room_temperature/config"))
	testbroker.Eventually(t, 10*time.Second, "a reading of cellar", func() bool { return countOn(b, "gatewayd/gw/cellar/temperature") > 0 })
	msgs := b.Messages(nil)
	if ci, ri := firstIndex(msgs, cellarCfg, before), firstIndex(msgs, "gatewayd/gw/cellar/temperature", before); ci < 0 || ci > ri {
		t.Errorf("cellar's config (message %d) after its first reading (message %d)", ci, ri)
	}

	// A new prefix: the old configs cleared, the new ones announced, and
	// Home Assistant's birth message heard on the new status topic.
	yaml = strings.Replace(strings.Replace(yaml, attic, cellar, 1), "homeassistant: {discovery: true}", "homeassistant: {discovery: true, prefix: ha2}", 1)
	if err := d.reload(t, yaml); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "the configs under the new prefix", allRetained("ha2/sensor/gw/room_temperature/config", "ha2/sensor/gw/cellar_humidity/config"))
	testbroker.Eventually(t, 10*time.Second, "the old prefix cleared", func() bool {
		_, ok := b.Retained("homeassistant/sensor/gw/room_temperature/config")
		return !ok
	})
	n := countOn(b, "ha2/sensor/gw/room_temperature/config")
	testbroker.Eventually(t, 10*time.Second, "ha2/status subscribed", func() bool {
		return slices.Contains(b.Subscriptions(d.Config().Broker.ClientID), "ha2/status")
	})
	b.Publish("ha2/status", []byte("online"), false, 1)
	testbroker.Eventually(t, 10*time.Second, "announced again after online on ha2/status", func() bool {
		return countOn(b, "ha2/sensor/gw/room_temperature/config") > n
	})

	// Discovery off: needs a restart; the running daemon keeps announcing.
	// The file then escapes discovery's rules (a gateway id with a dot):
	// the announcer keeps the config it has.
	off := strings.Replace(strings.Replace(yaml, "discovery: true", "discovery: false", 1), "gateway: {id: gw}", "gateway: {id: g.w}", 1)
	if err := d.reload(t, off); err != nil {
		t.Fatal(err)
	}
	if logs := d.logs.String(); !strings.Contains(logs, "homeassistant.discovery") || !strings.Contains(logs, "home assistant discovery not reloaded") {
		t.Error("turning discovery off was not logged as needing a restart, or the bad gateway id not refused")
	}
	if _, ok := b.Retained("ha2/sensor/gw/room_temperature/config"); !ok {
		t.Error("configs cleared by a reload that turned discovery off (it needs a restart)")
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
