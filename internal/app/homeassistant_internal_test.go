package app

import (
	"os"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
)

// haConfig tells Home Assistant what the resolved config says: topics with
// the sensor's own, QoS, models, and each quantity's expiry.
func TestHAConfig(t *testing.T) {
	cfg, err := config.Parse("ha.yaml", []byte(`gateway: {id: gw}
homeassistant: {discovery: true, prefix: ha}
broker: {availability: {topic: "gw/state", online: "1", offline: "0"}}
publish: {qos: 0}
sensors:
  - {name: room, type: simulated, interval: 10s, qos: 1}
  - name: tank
    type: iio
    device: bme280
    interval: 1m
    topic: "tank/{quantity}"
    deadband: {temperature: 0.1}
    heartbeat: 10m
  - {name: pump, type: modbus, url: "tcp://127.0.0.1:502", model: xy-md02}
  - {name: garden, type: rtl433, model: Acurite-Tower, id: 3456, stale_after: 20m}
  - {name: bedroom, type: ble, address: "A4:C1:38:12:34:56"}
`), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	h := haConfig(cfg, "9.9")
	if h.Prefix != "ha" || h.Gateway != "gw" || h.Version != "9.9" || h.Format != "json" ||
		h.Availability.Topic != "gw/state" || h.Availability.Online != "1" || h.Availability.Offline != "0" {
		t.Errorf("%+v", h)
	}
	room, tank, pump := h.Sensors[0], h.Sensors[1], h.Sensors[2]
	if room.Topic != "gatewayd/gw/room/{quantity}" || room.QoS != 1 || room.Model != "simulated" || room.Expire != 35*time.Second || room.ExpireOf != nil {
		t.Errorf("room: %+v", room)
	}
	if tank.Topic != "tank/{quantity}" || tank.QoS != 0 || tank.Model != "iio bme280" || tank.Expire != 185*time.Second ||
		tank.ExpireOf["temperature"] != 30*time.Minute+5*time.Second {
		t.Errorf("tank: %+v", tank)
	}
	if pump.Model != "modbus xy-md02" {
		t.Errorf("pump: %+v", pump)
	}
	// Push sensors: expire after their stale_after (default 15m).
	if g := h.Sensors[3]; g.Model != "rtl433 Acurite-Tower" || g.Expire != 20*time.Minute {
		t.Errorf("garden: %+v", g)
	}
	if bd := h.Sensors[4]; bd.Model != "ble A4:C1:38:12:34:56" || bd.Expire != 15*time.Minute {
		t.Errorf("bedroom: %+v", bd)
	}
}
