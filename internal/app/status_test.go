package app_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestStatus follows the daemon's status through a broker outage, with a
// sensor that works and one that fails, as /api/status serves it.
func TestStatus(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+`sensors:
  - {name: room, type: simulated, interval: 20ms}
  - {name: cellar, type: exec, command: ["/bin/sh", "-c", "echo no such device >&2; exit 3"], interval: 1s}
`)
	status := func() metrics.Status {
		t.Helper()
		code, body := scrape(t, d, "/api/status")
		var st metrics.Status
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
			t.Fatalf("/api/status = %d, %v:\n%s", code, err, body)
		}
		return st
	}
	var st metrics.Status
	testbroker.Eventually(t, 10*time.Second, "connected, both sensors read", func() bool {
		st = status()
		return st.Broker.Connected && len(st.Sensors) == 2 && st.Sensors[0].Reads > 0 && st.Sensors[1].Failures > 0
	})
	connectedAt := st.Broker.Since
	if st.Gateway != "gw" || st.Version != "test" || !st.Healthy || st.Broker.URL != b.URL() ||
		st.Broker.Connects != 1 || st.Broker.Reconnects != 0 || st.Broker.Protocol != 4 || st.Broker.Refused != 0 || time.Since(connectedAt) > 10*time.Second {
		t.Errorf("status: %+v", st)
	}
	room, cellar := st.Sensors[0], st.Sensors[1]
	if room.Name != "room" || room.Type != "simulated" || !room.Up || room.LastError != "" ||
		room.AgeSeconds == nil || *room.AgeSeconds > 5 || len(room.Values) != 2 ||
		room.Values[0].Quantity != "temperature" || room.Values[0].Unit != "°C" || room.Values[1].Unit != "%" {
		t.Errorf("room: %+v", room)
	}
	if cellar.Name != "cellar" || cellar.Type != "exec" || cellar.Up || cellar.LastReading != nil ||
		!strings.Contains(cellar.LastError, "no such device") || cellar.LastErrorTime == nil {
		t.Errorf("cellar: %+v", cellar)
	}

	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "disconnected, readings waiting", func() bool {
		st = status()
		return !st.Broker.Connected && st.Broker.ConnectionLost == 1 && st.Broker.LastError != "" &&
			st.Buffer.Waiting > 0 && st.Buffer.OldestAgeSeconds > 0
	})
	if st.Broker.URL != b.URL() || !st.Broker.Since.After(connectedAt) || st.Buffer.Durable {
		t.Errorf("while the broker is away: %+v", st)
	}
	b.Restart()
	testbroker.Eventually(t, 10*time.Second, "reconnected, buffer drained", func() bool {
		st = status()
		return st.Broker.Connected && st.Broker.Reconnects == 1 && st.Buffer.Waiting == 0
	})
	if st.Broker.ConnectionLost != 1 || st.Broker.Connects != 2 {
		t.Errorf("after the reconnect: %+v", st.Broker)
	}
}

// TestStatusMQTT5Refusals: on MQTT 5 the status names the protocol and
// counts the readings the broker refused.
func TestStatusMQTT5Refusals(t *testing.T) {
	testProtocol = 5
	defer func() { testProtocol = 4 }()
	b := testbroker.Start(t, testbroker.Options{DenyPublish: []string{"gatewayd/gw/s0/temperature"}})
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(1, "20ms"))
	var st metrics.Status
	testbroker.Eventually(t, 10*time.Second, "refusals in /api/status", func() bool {
		_, body := scrape(t, d, "/api/status")
		st = metrics.Status{}
		return json.Unmarshal([]byte(body), &st) == nil && st.Broker.Refused >= 3
	})
	if st.Broker.Protocol != 5 {
		t.Errorf("protocol %d", st.Broker.Protocol)
	}
	if _, page := scrape(t, d, "/"); !strings.Contains(page, "MQTT 5") || !strings.Contains(page, "readings (dropped)") {
		t.Error("the page does not show the protocol or the refusals")
	}
}
