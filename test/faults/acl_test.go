//go:build faults

package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// fleetBroker is a mosquitto run with deploy/mosquitto/gatewayd.conf (its
// TLS listener replaced by a plain one on a free port of 127.0.0.1, its
// paths by dir's), deploy/mosquitto/gatewayd.acl, and a password file made
// with mosquitto_passwd for users (name -> password).
func fleetBroker(t *testing.T, users map[string]string) *broker {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, dir: t.TempDir(), port: freePort(t)}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	b.logPath = filepath.Join(b.dir, "mosquitto.log")
	acl, err := os.ReadFile(filepath.Join(root, "deploy/mosquitto/gatewayd.acl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "gatewayd.acl"), acl, 0o644); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(b.dir, "passwd")
	create := "-c"
	for name, pw := range users {
		args := []string{"-b", passwd, name, pw}
		if create != "" {
			args = append([]string{create}, args...)
			create = ""
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd %v: %v: %s", args, err, out)
		}
	}
	snippet, err := os.ReadFile(filepath.Join(root, "deploy/mosquitto/gatewayd.conf"))
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{fmt.Sprintf("listener %d 127.0.0.1", b.port), "persistence_location " + b.dir + "/", "log_type error", "log_type warning"}
	for _, l := range strings.Split(string(snippet), "\n") {
		l = strings.TrimSpace(l)
		key, _, _ := strings.Cut(l, " ")
		switch {
		case l == "" || l[0] == '#':
		case key == "listener" || key == "certfile" || key == "keyfile":
			// TLS is tested by internal/session; here the plain listener.
		default:
			lines = append(lines, strings.ReplaceAll(l, "/etc/mosquitto/gatewayd/", b.dir+"/"))
		}
	}
	if os.Geteuid() == 0 {
		lines = append(lines, "user root")
	}
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.running() {
			b.cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("mosquitto config:\n%s\nlog:\n%s", strings.Join(lines, "\n"), tail(b.logPath, 30))
		}
	})
	b.start()
	return b
}

// collector is a consumer that logs in and counts the messages per topic
// under gatewayd/#.
type collector struct {
	mu     sync.Mutex
	topics map[string]int
	last   map[string]string
}

func newCollector(t *testing.T, url, user, pw string) *collector {
	t.Helper()
	c := &collector{topics: map[string]int{}, last: map[string]string{}}
	o := config.Default().Broker
	o.URLs, o.ClientID, o.Username, o.Password = []string{url}, "faults-collector", user, config.Secret(pw)
	o.Availability.Topic = ""
	o.CleanSession = true
	s, err := session.New(session.Options{Broker: o, Subscriptions: []config.Subscription{{Topic: "gatewayd/#", QoS: 1}},
		OnMessage: func(m session.Message) {
			c.mu.Lock()
			c.topics[m.Topic]++
			c.last[m.Topic] = string(m.Payload)
			c.mu.Unlock()
		}}, slog.New(slog.DiscardHandler), metrics.New("faults-collector"), metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); !s.Connected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the collector did not connect")
		}
	}
	return c
}

// count is the messages that arrived on topics with prefix.
func (c *collector) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.topics {
		if strings.HasPrefix(k, prefix) {
			n += v
		}
	}
	return n
}

// r2. deploy/mosquitto's ACL and password file: a gateway cannot publish
// into another's namespace.
func TestMosquittoFleetACL(t *testing.T) {
	row := newRow(t, "r2", "deploy/mosquitto ACL: gateway gw-a publishes one sensor into gw-b's namespace")
	b := fleetBroker(t, map[string]string{"gw-a": "pw-a", "gw-b": "pw-b", "collector": "pw-c"})
	col := newCollector(t, b.url(), "collector", "pw-c")

	pwFile := filepath.Join(t.TempDir(), "gw-a.password")
	if err := os.WriteFile(pwFile, []byte("pw-a\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`gateway: {id: gw-a}
log: {level: info, format: json}
broker:
  urls: [%q]
  username: gw-a
  password_file: %q
  keepalive: 2s
  connect_timeout: 2s
  reconnect_max_interval: 1s
  protocol: %d
embedded_broker: {enabled: false}
metrics: {listen: "127.0.0.1:0"}
sensors:
  - {name: own, type: simulated, interval: 100ms, seed: 1}
  - {name: foreign, type: simulated, interval: 100ms, seed: 2, topic: "gatewayd/gw-b/{sensor}/{quantity}"}
`, b.url(), pwFile, protocol)
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGatewayd(t, path)
	start := g.scrape()
	takenAtLeast(g, start, 80)
	m := quiet(g)
	terminate(g)

	own, foreign := col.count("gatewayd/gw-a/own/"), col.count("gatewayd/gw-b/")
	status := func() string { col.mu.Lock(); defer col.mu.Unlock(); return col.last["gatewayd/gw-a/status"] }
	deadline := time.Now().Add(5 * time.Second)
	for status() != "offline" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	taken, published := m.get("gatewayd_readings_taken_total"), m.get("gatewayd_mqtt_messages_published_total")
	notAuth := m.get(`gatewayd_mqtt_publish_refused_total{reason="not_authorized"}`)
	row.counters(m)
	row.Lost = fmt.Sprintf("%d of gw-a's own readings arrived; %d in gw-b's namespace", own, foreign)
	t.Logf("taken %v, published %v, refused not_authorized %v; collector: %d own, %d in gw-b's namespace; status %q",
		taken, published, notAuth, own, foreign, status())

	if foreign != 0 {
		t.Errorf("%d readings of gw-a arrived in gw-b's namespace", foreign)
	}
	if float64(own) < published/2-inFlightAtRest {
		t.Errorf("only %d of gw-a's own readings arrived (%v published, half of them its own)", own, published)
	}
	if s := status(); s != "offline" {
		t.Errorf("availability gatewayd/gw-a/status is %q at the end, want offline (online and the will must pass the ACL)", s)
	}
	switch protocol {
	case 5:
		// Half of the readings are the foreign sensor's: each refused.
		if notAuth < taken/2-inFlightAtRest || notAuth > taken/2+inFlightAtRest {
			t.Errorf("MQTT 5: %v refused as not_authorized of %v taken, want about half", notAuth, taken)
		}
		row.note("MQTT 5: every foreign reading refused (PUBACK 0x87) and counted under reason=not_authorized")
	default:
		if notAuth != 0 {
			t.Errorf("MQTT 3.1.1: %v refusals counted; 3.1.1 has none", notAuth)
		}
		if published < taken-inFlightAtRest {
			t.Errorf("MQTT 3.1.1: %v published of %v taken", published, taken)
		}
		row.note("MQTT 3.1.1: the foreign readings acknowledged by mosquitto, counted as published, dropped silently")
	}
}
