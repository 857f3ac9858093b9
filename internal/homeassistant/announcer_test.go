package homeassistant

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// connect runs a real session against b and returns its connection.
func connect(t *testing.T, b *testbroker.Broker) (*session.Session, *session.Conn) {
	t.Helper()
	bc := config.Default().Broker
	bc.URLs = []string{b.URL()}
	bc.ClientID = "ha-test"
	bc.Availability = config.Availability{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := session.New(session.Options{Broker: bc}, log, metrics.New("test"), metrics.NewLiveness(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var c *session.Conn
	waitFor(t, "the session to connect", 10*time.Second, func() bool { c, _ = s.Current(); return c != nil })
	return s, c
}

type diagSource struct {
	mu sync.Mutex
	d  Diagnostics
}

func (d *diagSource) get() Diagnostics { d.mu.Lock(); defer d.mu.Unlock(); return d.d }
func (d *diagSource) set(v Diagnostics) {
	d.mu.Lock()
	d.d = v
	d.mu.Unlock()
}

func newTestAnnouncer(t *testing.T, cfg Config, diag *diagSource) *Announcer {
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := NewAnnouncer(cfg, diag.get, 10*time.Second, log)
	a.every = 20 * time.Millisecond
	a.jitter = 10 * time.Millisecond
	return a
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

func retained(b *testbroker.Broker, topic string) string {
	p, _ := b.Retained(topic)
	return string(p)
}

func count(b *testbroker.Broker, topic string) int {
	return len(b.Messages(func(t string) bool { return t == topic }))
}

func TestAnnouncer(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	diag := &diagSource{d: Diagnostics{Buffered: 3, SensorsUp: 2, Sensors: 2}}
	a := newTestAnnouncer(t, testConfig(), diag)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Readings taken before any connection: learnt, not sent.
	a.Observe("living-room/temperature", "gatewayd/box-1/living-room/temperature")
	a.Observe("living-room/humidity", "gatewayd/box-1/living-room/humidity")
	a.Observe("not-configured/temperature", "x")

	_, conn := connect(t, b)
	a.OnConnect(conn)
	// OnConnect returns once the broker has acknowledged every config.
	want := []string{
		"homeassistant/binary_sensor/box-1/gatewayd_connectivity/config",
		"homeassistant/sensor/box-1/gatewayd_buffered/config",
		"homeassistant/sensor/box-1/gatewayd_sensors_up/config",
		"homeassistant/sensor/box-1/living-room_temperature/config",
		"homeassistant/sensor/box-1/living-room_humidity/config",
	}
	for _, tp := range want {
		if p := retained(b, tp); p == "" {
			t.Errorf("no retained config on %s", tp)
		} else {
			checkAgainstHA(t, "homeassistant", Message{Topic: tp, Payload: []byte(p)})
		}
	}
	// (The test broker records a message just after acknowledging it.)
	discovery := func() int {
		return len(b.Messages(func(tp string) bool { return strings.HasPrefix(tp, "homeassistant/") }))
	}
	waitFor(t, "every config recorded", 5*time.Second, func() bool { return discovery() >= len(want) })
	if got := discovery(); got != len(want) {
		t.Errorf("%d discovery messages, want %d", got, len(want))
	}
	waitFor(t, "the diagnostics", 5*time.Second, func() bool {
		return retained(b, "gatewayd/box-1/diagnostics") == `{"buffered":3,"sensors_up":2,"sensors":2}`
	})

	// A new series while connected: its config goes out before the
	// reading that the caller publishes next.
	a.Observe("air/pressure", "home/air/pressure")
	conn.Publish("home/air/pressure", 1, false, []byte(`{"value":1013.2}`)) // as the publisher would
	waitFor(t, "the reading", 5*time.Second, func() bool { return count(b, "home/air/pressure") == 1 })
	var order []string
	for _, m := range b.Messages(nil) {
		if strings.Contains(m.Topic, "air_pressure") || m.Topic == "home/air/pressure" {
			order = append(order, m.Topic)
		}
	}
	if len(order) != 2 || order[0] != "homeassistant/sensor/box-1/air_pressure/config" {
		t.Errorf("order at the broker: %v", order)
	}
	if !strings.Contains(retained(b, "homeassistant/sensor/box-1/air_pressure/config"), `"device_class":"atmospheric_pressure"`) {
		t.Errorf("air pressure config: %s", retained(b, "homeassistant/sensor/box-1/air_pressure/config"))
	}

	// Diagnostics go out when they change, not otherwise.
	before := count(b, "gatewayd/box-1/diagnostics")
	time.Sleep(100 * time.Millisecond) // five diagnostics ticks with nothing changed
	if n := count(b, "gatewayd/box-1/diagnostics"); n != before {
		t.Errorf("diagnostics published %d times without a change", n-before)
	}
	diag.set(Diagnostics{Buffered: 0, SensorsUp: 1, Sensors: 2})
	waitFor(t, "the changed diagnostics", 5*time.Second, func() bool {
		return retained(b, "gatewayd/box-1/diagnostics") == `{"buffered":0,"sensors_up":1,"sensors":2}`
	})

	// Home Assistant's birth message: everything again. A retained one
	// (it comes with a subscription) does nothing.
	topic := "homeassistant/sensor/box-1/living-room_temperature/config"
	a.HandleStatus(session.Message{Topic: "homeassistant/status", Payload: []byte("online"), Retained: true})
	a.HandleStatus(session.Message{Topic: "homeassistant/status", Payload: []byte("offline")})
	time.Sleep(100 * time.Millisecond)
	if n := count(b, topic); n != 1 {
		t.Fatalf("%s sent %d times after a retained online and an offline", topic, n)
	}
	a.HandleStatus(session.Message{Topic: "homeassistant/status", Payload: []byte("online")})
	waitFor(t, "everything sent again after online", 5*time.Second, func() bool {
		return count(b, topic) == 2 && count(b, "homeassistant/sensor/box-1/air_pressure/config") == 2
	})

	// Reload without the air sensor: its configs are cleared, the rest sent again.
	next := testConfig()
	next.Sensors = next.Sensors[:1]
	a.Reload(next)
	waitFor(t, "air's config cleared", 5*time.Second, func() bool {
		_, has := b.Retained("homeassistant/sensor/box-1/air_pressure/config")
		return !has && count(b, topic) == 3
	})
	// A reading of the removed sensor still in flight is not announced.
	a.Observe("air/pressure", "home/air/pressure")
	time.Sleep(50 * time.Millisecond)
	if _, has := b.Retained("homeassistant/sensor/box-1/air_pressure/config"); has {
		t.Error("a removed sensor was announced again")
	}
	// Added back: announced at its next reading.
	a.Reload(testConfig())
	a.Observe("air/pressure", "home/air/pressure")
	waitFor(t, "air announced again", 5*time.Second, func() bool {
		_, has := b.Retained("homeassistant/sensor/box-1/air_pressure/config")
		return has
	})
}

// Clearing a removed sensor while there is no connection waits for the
// next connection, and comes before the configs on it.
func TestAnnouncerClearsAtNextConnect(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	a := newTestAnnouncer(t, testConfig(), &diagSource{})
	sess, conn := connect(t, b)
	a.Observe("air/temperature", "home/air/temperature")
	a.OnConnect(conn)
	clearTopic := "homeassistant/sensor/box-1/air_temperature/config"
	if retained(b, clearTopic) == "" {
		t.Fatal("not announced")
	}

	b.Restart() // forgets retained messages too, as a broker without persistence does
	b.Publish(clearTopic, []byte(`{"stale":true}`), true, 1)
	next := testConfig()
	next.Sensors = next.Sensors[:1]
	a.Reload(next) // no Run: nothing is sent now

	var conn2 *session.Conn
	waitFor(t, "the session to reconnect", 10*time.Second, func() bool {
		conn2, _ = sess.Current()
		return conn2 != nil && conn2 != conn
	})
	a.OnConnect(conn2)
	if _, has := b.Retained(clearTopic); has {
		t.Errorf("%s not cleared at the next connect", clearTopic)
	}
	if retained(b, "homeassistant/sensor/box-1/gatewayd_buffered/config") == "" {
		t.Error("the gateway's entities were not announced after the restart")
	}
	a.mu.Lock()
	left := len(a.clears)
	a.mu.Unlock()
	if left != 0 {
		t.Errorf("%d clears still pending after they were acknowledged", left)
	}
}

// OnConnect sends thousands of configs with a bounded window, and returns
// only when all were acknowledged.
func TestAnnouncerMany(t *testing.T) {
	cfg := testConfig()
	cfg.Sensors = nil
	for i := range 2000 {
		cfg.Sensors = append(cfg.Sensors, Sensor{Name: "s" + strings.Repeat("x", i%3) + itoa(i), Topic: "t/{sensor}/{quantity}"})
	}
	a := newTestAnnouncer(t, cfg, &diagSource{})
	for _, s := range cfg.Sensors {
		a.Observe(s.Name+"/temperature", "t/"+s.Name+"/temperature")
	}
	var sent int
	a.OnSent = func(n int) { sent += n }
	b := testbroker.Start(t, testbroker.Options{})
	_, conn := connect(t, b)
	start := time.Now()
	a.OnConnect(conn)
	t.Logf("%d configs acknowledged in %s", sent, time.Since(start))
	if sent != 2003 {
		t.Errorf("sent %d, want 2003", sent)
	}
	last := "homeassistant/sensor/box-1/" + cfg.Sensors[len(cfg.Sensors)-1].Name + "_temperature/config"
	if retained(b, last) == "" {
		t.Errorf("%s not retained when OnConnect returned", last)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
