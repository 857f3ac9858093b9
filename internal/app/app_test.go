package app_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// testProtocol is the broker.protocol of baseYAML; TestGuaranteesOnMQTT5
// runs the tests again with 5.
var testProtocol = 4

func baseYAML(url string) string {
	return fmt.Sprintf(`gateway: {id: gw}
broker:
  urls: [%q]
  keepalive: 2s
  connect_timeout: 1s
  reconnect_max_interval: 500ms
  protocol: %d
`, url, testProtocol)
}

func TestReadingsArriveAsSpecified(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "test-sub", "gatewayd/gw/#")
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(2, "20ms"))

	testbroker.Eventually(t, 10*time.Second, "40 readings at the subscriber", func() bool {
		return len(sub.messages()) >= 41 // + the retained "online"
	})
	var readings []testbroker.Message
	for _, m := range sub.messages() {
		if m.Topic == "gatewayd/gw/status" {
			if string(m.Payload) != "online" {
				t.Errorf("status %q", m.Payload)
			}
			continue
		}
		readings = append(readings, m)
		parts := strings.Split(m.Topic, "/")
		if len(parts) != 4 || parts[0] != "gatewayd" || parts[1] != "gw" {
			t.Fatalf("topic %q", m.Topic)
		}
		var r map[string]any
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatalf("payload %q: %v", m.Payload, err)
		}
		if r["sensor"] != parts[2] || r["quantity"] != parts[3] || len(r) != 6 {
			t.Fatalf("payload %q on %q", m.Payload, m.Topic)
		}
		unit := map[string]string{"temperature": "°C", "humidity": "%"}[parts[3]]
		if r["unit"] != unit {
			t.Errorf("unit %v for %s", r["unit"], parts[3])
		}
		if ts, err := time.Parse(time.RFC3339Nano, r["time"].(string)); err != nil || ts.Location() != time.UTC || time.Since(ts) > time.Minute {
			t.Errorf("time %v: %v", r["time"], err)
		}
		if m.QoS != 1 {
			t.Errorf("delivered at QoS %d", m.QoS)
		}
	}
	// What the broker received from gatewayd, and what it delivered to
	// the subscriber: both hold every series from seq 1, in order.
	for _, c := range []struct {
		who  string
		msgs []testbroker.Message
	}{{"broker", b.Messages(readingsOn("gatewayd/gw/s"))}, {"subscriber", readings}} {
		got := series(t, c.msgs)
		if len(got) != 4 {
			t.Fatalf("%s: series: %v", c.who, got)
		}
		checkNoGaps(t, got, 1)
		for k, rs := range got {
			if rs[0].Seq != 1 {
				t.Errorf("%s: %s starts at seq %d", c.who, k, rs[0].Seq)
			}
		}
		if t.Failed() {
			for i, m := range c.msgs[:min(len(c.msgs), 8)] {
				t.Logf("%s: message %d: %s %s", c.who, i, m.Topic, m.Payload)
			}
		}
	}
	if v, ok := b.Retained("gatewayd/gw/status"); !ok || string(v) != "online" {
		t.Errorf("retained status %q %v", v, ok)
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 5*time.Second, "retained offline after shutdown", func() bool {
		v, _ := b.Retained("gatewayd/gw/status")
		return string(v) == "offline"
	})
}

// TestBrokerRestartLosesNothing stops the broker for a while as readings
// flow at 200 per second; every reading must reach the broker, in order.
func TestBrokerRestartLosesNothing(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(4, "40ms")) // 4 x 2 quantities x 25/s
	m := d.Metrics
	testbroker.Eventually(t, 10*time.Second, "readings flowing", func() bool { return value(m.MQTTPublished) >= 200 })

	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "session down", func() bool { return !d.Session.Connected() })
	down := value(m.ReadingsTaken)
	testbroker.Eventually(t, 10*time.Second, "readings buffered while down", func() bool {
		return value(m.ReadingsTaken) >= down+200
	})
	restarted := time.Now()
	b.Restart()
	testbroker.Eventually(t, 10*time.Second, "reconnected", d.Session.Connected)
	t.Logf("reconnected %s after the broker came back", time.Since(restarted).Round(time.Millisecond))
	testbroker.Eventually(t, 10*time.Second, "buffer drained", func() bool { return d.Queue.Len() == 0 })
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}

	got := series(t, b.Messages(readingsOn("gatewayd/gw/s")))
	distinct, dups := checkNoGaps(t, got, 1)
	taken, published, dropped := value(m.ReadingsTaken), value(m.MQTTPublished), value(m.BufferDropped)
	t.Logf("taken %v, published %v, distinct at broker %d, duplicates %d, resent %v", taken, published, distinct, dups, value(m.MQTTResent))
	if published+dropped != taken || dropped != 0 {
		t.Errorf("published %v + dropped %v != taken %v", published, dropped, taken)
	}
	if float64(distinct) != taken {
		t.Errorf("broker got %d distinct readings of %v taken", distinct, taken)
	}
	if value(m.MQTTConnectionLost) < 1 || value(m.MQTTConnects) < 2 {
		t.Errorf("lost %v, connects %v", value(m.MQTTConnectionLost), value(m.MQTTConnects))
	}
	if r := value(m.MQTTResent); r > 100 {
		t.Errorf("resent %v: more than max_inflight", r)
	}
}

// TestHalfOpenLink freezes the link (nothing answers, TCP stays up): the
// keepalive must notice within 1.5 x keepalive, and nothing is lost.
func TestHalfOpenLink(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	p := testbroker.NewProxy(t, b.Addr())
	d := startDaemon(t, baseYAML(p.URL())+sensorsYAML(2, "20ms"))
	m := d.Metrics
	testbroker.Eventually(t, 10*time.Second, "readings flowing", func() bool { return value(m.MQTTPublished) >= 50 })

	p.Blackhole()
	frozen := time.Now()
	testbroker.Eventually(t, 10*time.Second, "connection declared lost", func() bool { return value(m.MQTTConnectionLost) >= 1 })
	noticed := time.Since(frozen)
	t.Logf("half-open link noticed after %s (keepalive 2s)", noticed.Round(time.Millisecond))
	if noticed > 3*time.Second+time.Second { // 1.5 x keepalive, plus slack for a loaded machine
		t.Errorf("noticed after %s, want within 1.5 x keepalive", noticed)
	}
	p.Restore()
	testbroker.Eventually(t, 15*time.Second, "reconnected and drained", func() bool {
		return d.Session.Connected() && d.Queue.Len() == 0
	})
	// One stall, one warning (a burst of readings in flight used to log
	// one each).
	if n := strings.Count(d.logs.String(), "the broker stopped acknowledging"); n > 1 {
		t.Errorf("%d stall warnings for one stall", n)
	}
	d.stop()
	checkNoGaps(t, series(t, b.Messages(readingsOn("gatewayd/gw/s"))), 1)
}

// TestHalfOpenLinkIdle: with nothing to publish, only the keepalive ping
// can notice a frozen link; it must within 1.5 x keepalive.
func TestHalfOpenLinkIdle(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	p := testbroker.NewProxy(t, b.Addr())
	d := startDaemon(t, baseYAML(p.URL())+"sensors: []\n")
	m := d.Metrics
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	p.Blackhole()
	frozen := time.Now()
	testbroker.Eventually(t, 10*time.Second, "connection declared lost", func() bool { return value(m.MQTTConnectionLost) >= 1 })
	noticed := time.Since(frozen)
	t.Logf("idle half-open link noticed after %s (keepalive 2s)", noticed.Round(time.Millisecond))
	if noticed > 3*time.Second+time.Second {
		t.Errorf("noticed after %s, want within 1.5 x keepalive", noticed)
	}
	p.Restore()
	testbroker.Eventually(t, 15*time.Second, "reconnected", d.Session.Connected)
}

// TestQoS0NotLostWhileReconnecting: paho drops QoS 0 publishes made while it
// reconnects; gatewayd keeps them buffered until a connection is up.
func TestQoS0NotLostWhileReconnecting(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+"publish: {qos: 0}\n"+sensorsYAML(2, "20ms"))
	m := d.Metrics
	testbroker.Eventually(t, 10*time.Second, "readings flowing", func() bool { return value(m.MQTTPublished) >= 50 })
	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "session down", func() bool { return !d.Session.Connected() })
	// Readings taken from here on were taken while no connection was up.
	from := uint64(value(m.ReadingsTaken)/4) + 2
	testbroker.Eventually(t, 10*time.Second, "readings buffered", func() bool { return d.Queue.Len() >= 100 })
	b.Restart()
	testbroker.Eventually(t, 10*time.Second, "drained", func() bool { return d.Session.Connected() && d.Queue.Len() == 0 })
	d.stop()
	got := series(t, b.Messages(readingsOn("gatewayd/gw/s")))
	for k, rs := range got {
		var after []reading
		for _, r := range rs {
			if r.Seq >= from {
				after = append(after, r)
			}
		}
		got[k] = after
	}
	checkNoGaps(t, got, from)
}

// TestOverflowDropsOldest: an outage longer than the buffer keeps the
// newest max_messages readings and counts the rest as dropped.
func TestOverflowDropsOldest(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+"buffer: {max_messages: 50}\n"+sensorsYAML(2, "10ms"))
	m := d.Metrics
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "buffer overflowing", func() bool { return value(m.BufferDropped) >= 100 })
	if n := d.Queue.Len(); n > 50 {
		t.Fatalf("buffer holds %d > max_messages", n)
	}
	_, body := scrape(t, d, "/metrics")
	if !strings.Contains(body, "gatewayd_buffer_messages 50") {
		t.Errorf("gatewayd_buffer_messages not 50:\n%s", grep(body, "gatewayd_buffer_"))
	}
	b.Restart()
	testbroker.Eventually(t, 10*time.Second, "drained", func() bool { return d.Session.Connected() && d.Queue.Len() == 0 })
	d.stop()
	taken, published, dropped := value(m.ReadingsTaken), value(m.MQTTPublished), value(m.BufferDropped)
	if published+dropped != taken {
		t.Errorf("published %v + dropped %v != taken %v", published, dropped, taken)
	}
}

// TestBrokerAbsentAtStart: the daemon comes up and serves /metrics without
// a broker, buffers, and delivers everything once the broker appears.
func TestBrokerAbsentAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := startDaemon(t, baseYAML("tcp://"+addr)+sensorsYAML(1, "20ms"))
	testbroker.Eventually(t, 10*time.Second, "readings buffered", func() bool { return d.Queue.Len() >= 20 })
	if code, _ := scrape(t, d, "/readyz"); code != 503 {
		t.Errorf("/readyz = %d without a broker", code)
	}
	if code, _ := scrape(t, d, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
	if _, body := scrape(t, d, "/metrics"); !strings.Contains(body, "gatewayd_mqtt_connected 0") {
		t.Error("gatewayd_mqtt_connected is not 0")
	}
	b := testbroker.StartAt(t, addr, testbroker.Options{})
	appeared := time.Now()
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	t.Logf("connected %s after the broker appeared", time.Since(appeared).Round(time.Millisecond))
	testbroker.Eventually(t, 10*time.Second, "drained", func() bool { return d.Queue.Len() == 0 })
	if code, _ := scrape(t, d, "/readyz"); code != 200 {
		t.Errorf("/readyz = %d when connected", code)
	}
	d.stop()
	got := series(t, b.Messages(readingsOn("gatewayd/gw/s")))
	checkNoGaps(t, got, 1)
}

// TestQueuedMessagesBeforeSubscribe: messages the broker queued for the
// persistent session arrive right after CONNACK, before SUBSCRIBE is
// answered; they must be logged and counted all the same.
func TestQueuedMessagesBeforeSubscribe(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	cfg := baseYAML(b.URL()) + "sensors: []\n"
	d := startDaemon(t, cfg)
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	testbroker.Eventually(t, 10*time.Second, "subscribed", func() bool { return strings.Contains(d.logs.String(), `"msg":"subscribed"`) })
	d.stop()
	for i := 0; i < 5; i++ {
		b.Publish("gatewayd/gw/cmd/test", []byte(fmt.Sprintf("queued-%d", i)), false, 1)
	}
	d2 := startDaemon(t, cfg)
	testbroker.Eventually(t, 10*time.Second, "5 queued messages logged", func() bool {
		return strings.Count(d2.logs.String(), `"msg":"message received"`) == 5
	})
	for i := 0; i < 5; i++ {
		if !strings.Contains(d2.logs.String(), fmt.Sprintf(`"payload":"queued-%d"`, i)) {
			t.Errorf("queued-%d not logged", i)
		}
	}
	if got := value(d2.Metrics.MQTTReceived.WithLabelValues("gatewayd/gw/cmd/#")); got != 5 {
		t.Errorf("received_total = %v", got)
	}
}

func TestHostilePayloadsAreLoggedSafely(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+"sensors: []\nlog: {format: json}\n")
	testbroker.Eventually(t, 10*time.Second, "subscribed", func() bool { return strings.Contains(d.logs.String(), `"msg":"subscribed"`) })
	payloads := [][]byte{
		[]byte("line1\nlevel=ERROR msg=\"forged\""),
		{0xff, 0xfe, 0x00, 0x01},
		[]byte(strings.Repeat("A", 100000)),
		[]byte("\x1b[2J\u202e"),
		{},
	}
	for _, p := range payloads {
		b.Publish("gatewayd/gw/cmd/x", p, false, 1)
	}
	testbroker.Eventually(t, 10*time.Second, "all logged", func() bool {
		return strings.Count(d.logs.String(), `"msg":"message received"`) == len(payloads)
	})
	for _, line := range strings.Split(strings.TrimSpace(d.logs.String()), "\n") {
		if len(line) > 2000 {
			t.Errorf("log line of %d bytes", len(line))
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("log line is not one JSON object: %q", line)
		}
		if strings.Contains(line, "forged") && !strings.Contains(line, `line1\\nlevel=ERROR`) {
			t.Errorf("newline not escaped: %s", line)
		}
	}
	if !d.Session.Connected() {
		t.Fatal("hostile payloads broke the session")
	}
}

func TestRefusedSubscriptionIsCounted(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{DenySubscribe: []string{"secret/#"}})
	d := startDaemon(t, baseYAML(b.URL())+"sensors: []\nsubscriptions: [{topic: 'secret/#', qos: 1}, {topic: 'open/#', qos: 1}]\n")
	testbroker.Eventually(t, 10*time.Second, "refusal counted", func() bool {
		return value(d.Metrics.MQTTSubscribeFailures.WithLabelValues("secret/#")) == 1
	})
	if !strings.Contains(d.logs.String(), `"level":"ERROR","msg":"the broker refused a subscription","component":"session","subscription":"secret/#"`) {
		t.Errorf("refusal not logged as an error:\n%s", d.logs.String())
	}
	if value(d.Metrics.MQTTSubscribeFailures.WithLabelValues("open/#")) != 0 {
		t.Error("open/# counted as refused")
	}
}

func TestFailoverToSecondURL(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "tcp://" + ln.Addr().String()
	ln.Close()
	yaml := strings.Replace(baseYAML(b.URL()), fmt.Sprintf("[%q]", b.URL()), fmt.Sprintf("[%q, %q]", dead, b.URL()), 1)
	d := startDaemon(t, yaml+sensorsYAML(1, "50ms"))
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	if !strings.Contains(d.logs.String(), `"msg":"connected","component":"session","broker":"`+b.URL()) {
		t.Errorf("did not log the second URL as connected:\n%s", d.logs.String())
	}
}

func TestUsernamePassword(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{Users: map[string]string{"gw": "s3cret-pw"}})
	good := startDaemon(t, baseYAML(b.URL())+"  username: gw\n  password: s3cret-pw\n"+sensorsYAML(1, "50ms"))
	testbroker.Eventually(t, 10*time.Second, "connected with the right password", good.Session.Connected)
	good.stop()

	bad := startDaemon(t, baseYAML(b.URL())+"  username: gw\n  password: wrong-pw\n"+sensorsYAML(1, "50ms"))
	testbroker.Eventually(t, 10*time.Second, "refused", func() bool { return value(bad.Metrics.MQTTConnectFailures) >= 2 })
	if bad.Session.Connected() {
		t.Fatal("connected with a wrong password")
	}
	for _, d := range []*daemon{good, bad} {
		if strings.Contains(d.logs.String(), "s3cret-pw") || strings.Contains(d.logs.String(), "wrong-pw") {
			t.Fatal("a password reached the log")
		}
	}
}

func TestWebSocket(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{WebSocket: true})
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(1, "20ms"))
	testbroker.Eventually(t, 10*time.Second, "readings over ws://", func() bool {
		return len(b.Messages(readingsOn("gatewayd/gw/s0/"))) >= 10
	})
	d.stop()
}

func TestTLSWithClientCertificate(t *testing.T) {
	pki := testbroker.NewPKI(t)
	b := testbroker.Start(t, testbroker.Options{TLS: pki.ServerConfig()})
	tlsYAML := fmt.Sprintf("  tls: {ca_file: %q, cert_file: %q, key_file: %q}\n", pki.CAFile, pki.CertFile, pki.KeyFile)
	d := startDaemon(t, baseYAML(b.URL())+tlsYAML+sensorsYAML(1, "20ms"))
	testbroker.Eventually(t, 10*time.Second, "readings over TLS", func() bool {
		return len(b.Messages(readingsOn("gatewayd/gw/s0/"))) >= 10
	})
	d.stop()

	// Without the client certificate the broker refuses the handshake.
	noCert := startDaemon(t, baseYAML(b.URL())+fmt.Sprintf("  tls: {ca_file: %q}\n", pki.CAFile)+"sensors: []\n")
	testbroker.Eventually(t, 10*time.Second, "refused", func() bool { return value(noCert.Metrics.MQTTConnectFailures) >= 2 })
	if noCert.Session.Connected() {
		t.Fatal("connected without a client certificate")
	}
	// Without the CA the broker's certificate is not trusted.
	noCA := startDaemon(t, baseYAML(b.URL())+"sensors: []\n")
	testbroker.Eventually(t, 10*time.Second, "untrusted", func() bool {
		return strings.Contains(noCA.logs.String(), "certificate")
	})
}

func TestLastWillOnLostLink(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	p := testbroker.NewProxy(t, b.Addr())
	d := startDaemon(t, baseYAML(p.URL())+"sensors: []\n")
	testbroker.Eventually(t, 10*time.Second, "online", func() bool {
		v, _ := b.Retained("gatewayd/gw/status")
		return string(v) == "online"
	})
	p.Cut()
	testbroker.Eventually(t, 10*time.Second, "will published", func() bool {
		v, _ := b.Retained("gatewayd/gw/status")
		return string(v) == "offline"
	})
	p.Restore()
	testbroker.Eventually(t, 10*time.Second, "online again", func() bool {
		v, _ := b.Retained("gatewayd/gw/status")
		return string(v) == "online" && d.Session.Connected()
	})
}

// TestMetricsEndpoint scrapes /metrics over HTTP: every metric of SPEC.md
// is there, and promtool accepts the exposition.
func TestMetricsEndpoint(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+sensorsYAML(1, "20ms"))
	testbroker.Eventually(t, 10*time.Second, "readings published", func() bool { return value(d.Metrics.MQTTPublished) >= 4 })
	code, body := scrape(t, d, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	spec := []string{
		"gatewayd_mqtt_connected 1",
		"gatewayd_mqtt_connects_total 1",
		"gatewayd_mqtt_connection_lost_total 0",
		"gatewayd_mqtt_messages_published_total ",
		"gatewayd_mqtt_publish_failures_total 0",
		`gatewayd_mqtt_messages_received_total{subscription="gatewayd/gw/cmd/#"} 0`,
		`gatewayd_sensor_reads_total{sensor="s0"} `,
		`gatewayd_sensor_read_errors_total{sensor="s0"} 0`,
		`gatewayd_sensor_value{quantity="temperature",sensor="s0"} `,
		`gatewayd_sensor_value{quantity="humidity",sensor="s0"} `,
		"gatewayd_buffer_messages ",
		"gatewayd_buffer_dropped_total 0",
		`gatewayd_build_info{goversion="go`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	}
	for _, want := range spec {
		if !strings.Contains(body, "\n"+want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	promtool(t, body)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "connected", "/": `data-sensor="s0"`} {
		code, body := scrape(t, d, path)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s = %d %q", path, code, body)
		}
	}
	// And when the broker is gone.
	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "disconnected", func() bool { return !d.Session.Connected() })
	_, body = scrape(t, d, "/metrics")
	promtool(t, body)
	if code, _ := scrape(t, d, "/readyz"); code != 503 {
		t.Errorf("/readyz = %d while disconnected", code)
	}
}

// promtool runs `promtool check metrics` when it is installed; CI sets
// GATEWAYD_REQUIRE_PROMTOOL=1 so that a missing promtool fails there.
func promtool(t *testing.T, exposition string) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not installed")
		}
		t.Log("promtool not installed; skipping its check")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
