package app_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// Reload tests: each kind of change applied while readings flow, checked at
// a subscriber: no seq gap, no duplicate, no reconnect.

// onlineMessages counts the "online" births a subscriber saw: one per
// connection of the daemon.
func onlineMessages(sub *subscriber) int {
	n := 0
	for _, m := range sub.messages() {
		if m.Topic == "gatewayd/gw/status" && string(m.Payload) == "online" {
			n++
		}
	}
	return n
}

// flowing waits until n more readings were taken.
func flowing(t *testing.T, d *daemon, n float64) {
	t.Helper()
	from := value(d.Metrics.ReadingsTaken)
	testbroker.Eventually(t, 10*time.Second, fmt.Sprintf("%v more readings", n), func() bool {
		return value(d.Metrics.ReadingsTaken) >= from+n
	})
}

// settle stops the daemon once everything taken reached the subscriber.
func settle(t *testing.T, d *daemon, sub *subscriber) {
	t.Helper()
	testbroker.Eventually(t, 10*time.Second, "buffer drained", func() bool { return d.Queue.Len() == 0 })
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "every reading at the subscriber", func() bool {
		return float64(len(sub.messages())) >= value(d.Metrics.ReadingsTaken)+2 // + online, offline
	})
}

func sensorYAML(name string, extra string) string {
	return fmt.Sprintf("  - {name: %s, type: simulated, interval: 20ms, seed: 1%s}\n", name, extra)
}

// TestReloadSensors: a sensor changed, one removed and one added take effect
// at once; a sensor removed and added back continues its numbering; nothing
// is lost or sent twice and the session stays up.
func TestReloadSensors(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "reload-sub", "gatewayd/gw/#")
	base := baseYAML(b.URL())
	d := startDaemon(t, base+"sensors:\n"+sensorYAML("a", "")+sensorYAML("b", ""))
	flowing(t, d, 50)

	// a changed (an offset), b removed, c added.
	if err := d.reload(t, base+"sensors:\n"+sensorYAML("a", ", offset: {temperature: 100}")+sensorYAML("c", "")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "c published and a with its offset", func() bool {
		got := series(t, readingsOf(sub.messages()))
		a := got["a/temperature"]
		return len(got["c/temperature"]) > 5 && len(a) > 0 && a[len(a)-1].Value > 100
	})
	bBefore := len(series(t, readingsOf(sub.messages()))["b/temperature"])
	flowing(t, d, 50)
	if n := len(series(t, readingsOf(sub.messages()))["b/temperature"]); n > bBefore+1 {
		t.Errorf("b still published after its removal: %d then %d", bBefore, n)
	}
	// b back: its seq continues.
	if err := d.reload(t, base+"sensors:\n"+sensorYAML("a", ", offset: {temperature: 100}")+sensorYAML("b", "")+sensorYAML("c", "")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "b again", func() bool {
		return len(series(t, readingsOf(sub.messages()))["b/temperature"]) > bBefore+5
	})
	settle(t, d, sub)
	_, dups := checkNoGaps(t, series(t, readingsOf(sub.messages())), 1)
	if dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if n := onlineMessages(sub); n != 1 || value(d.Metrics.MQTTConnects) != 1 {
		t.Errorf("reconnected: %d births, %v connects", n, value(d.Metrics.MQTTConnects))
	}
	if v := value(d.Metrics.ConfigReloadOK); v != 1 {
		t.Errorf("gatewayd_config_last_reload_successful %v", v)
	}
}

// readingsOf drops the status messages.
func readingsOf(msgs []testbroker.Message) []testbroker.Message {
	var out []testbroker.Message
	for _, m := range msgs {
		if !strings.HasSuffix(m.Topic, "/status") {
			out = append(out, m)
		}
	}
	return out
}

// TestReloadPublishAndDeadband: a new publish.topic and a deadband apply at
// once; seq continues on the new topic.
func TestReloadPublishAndDeadband(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "reload-pub", "#")
	base := baseYAML(b.URL())
	d := startDaemon(t, base+"sensors:\n"+sensorYAML("a", ""))
	flowing(t, d, 20)
	if err := d.reload(t, base+"publish: {topic: 'site/{gateway}/{sensor}/{quantity}'}\nsensors:\n"+sensorYAML("a", ", deadband: {humidity: 1000}")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "readings on the new topic", func() bool {
		n := 0
		for _, m := range sub.messages() {
			if m.Topic == "site/gw/a/temperature" {
				n++
			}
		}
		return n >= 10
	})
	settle(t, d, sub)
	var old, moved, humidity int
	for _, m := range sub.messages() {
		switch {
		case m.Topic == "gatewayd/gw/a/temperature":
			old++
		case m.Topic == "site/gw/a/temperature":
			moved++
		case m.Topic == "site/gw/a/humidity":
			humidity++
		}
	}
	if old == 0 || moved == 0 || humidity != 1 {
		t.Errorf("old topic %d, new topic %d, humidity within a deadband of 1000 %d (want 1)", old, moved, humidity)
	}
	if _, dups := checkNoGaps(t, series(t, readingsOf(sub.messages())), 1); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if value(d.Metrics.MQTTConnects) != 1 {
		t.Error("reconnected")
	}
}

// TestReloadSubscriptions: a subscription added is subscribed, one removed is
// unsubscribed, on the live connection.
func TestReloadSubscriptions(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	base := baseYAML(b.URL()) + "sensors: []\n"
	d := startDaemon(t, base)
	testbroker.Eventually(t, 10*time.Second, "subscribed", func() bool { return strings.Contains(d.logs.String(), `"msg":"subscribed"`) })
	if err := d.reload(t, base+"subscriptions: [{topic: 'other/#', qos: 1}]\n"); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "other/# subscribed", func() bool {
		b.Publish("other/probe", []byte("p"), false, 1)
		return strings.Contains(d.logs.String(), `"topic":"other/probe"`)
	})
	b.Publish("gatewayd/gw/cmd/gone", []byte("x"), false, 1)
	b.Publish("other/marker", []byte("m"), false, 1)
	testbroker.Eventually(t, 10*time.Second, "marker logged", func() bool { return strings.Contains(d.logs.String(), `"topic":"other/marker"`) })
	if strings.Contains(d.logs.String(), "cmd/gone") {
		t.Error("a message on the removed subscription arrived")
	}
	if value(d.Metrics.MQTTConnects) != 1 {
		t.Error("reconnected")
	}
}

// TestReloadBroker: a broker.* change reconnects once with the new settings,
// losing nothing; also during an outage, to another broker.
func TestReloadBroker(t *testing.T) {
	b1 := testbroker.Start(t, testbroker.Options{})
	yaml := func(url, keepalive string) string {
		return strings.Replace(baseYAML(url), "keepalive: 2s", "keepalive: "+keepalive, 1) + "sensors:\n" + sensorYAML("a", "")
	}
	d := startDaemon(t, yaml(b1.URL(), "2s"))
	flowing(t, d, 20)
	if err := d.reload(t, yaml(b1.URL(), "3s")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "reconnected once", func() bool { return value(d.Metrics.MQTTConnects) == 2 && d.Session.Connected() })
	flowing(t, d, 20)

	// An outage, and meanwhile the config moves to another broker.
	b1.Stop()
	testbroker.Eventually(t, 10*time.Second, "down", func() bool { return !d.Session.Connected() })
	flowing(t, d, 20)
	b2 := testbroker.Start(t, testbroker.Options{})
	if err := d.reload(t, yaml(b2.URL(), "3s")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "connected to the new broker, drained", func() bool {
		return d.Session.Connected() && d.Queue.Len() == 0 && len(b2.Messages(readingsOn("gatewayd/gw/a"))) > 0
	})
	flowing(t, d, 10)
	testbroker.Eventually(t, 10*time.Second, "drained", func() bool { return d.Queue.Len() == 0 })
	d.stop()
	all := append(b1.Messages(readingsOn("gatewayd/gw/a")), b2.Messages(readingsOn("gatewayd/gw/a"))...)
	distinct, dups := checkNoGaps(t, series(t, all), 1)
	t.Logf("%d distinct readings, %d sent again after the reconnects", distinct, dups)
	if float64(distinct) != value(d.Metrics.ReadingsTaken) {
		t.Errorf("%d distinct readings at the brokers of %v taken", distinct, value(d.Metrics.ReadingsTaken))
	}
	if c := value(d.Metrics.MQTTConnects); c != 3 {
		t.Errorf("%v connects, want 3 (start, keepalive change, new broker)", c)
	}
}

// TestReloadReconnectKeepsOrder: a reload that reconnects (a broker.*
// setting changed) keeps each series in order at the broker and at its
// subscribers, also when the broker acknowledged a reading on the old
// connection and has not delivered it yet. mochi (the embedded broker too)
// sends the PUBACK first and then delivers, from the old connection's
// goroutine; had the new connection started publishing then, the readings
// after it could overtake it (TestReloadBroker once, under load: "seq 12
// first arrived after 10; seq 11 first arrived after 19"). The broker here
// holds one acknowledged reading back for brokerLag, or until the next two
// of its series arrived: the new connection must wait until the broker
// closed the old one.
func TestReloadReconnectKeepsOrder(t *testing.T) {
	const brokerLag = 500 * time.Millisecond // below the session's wait for the close
	var (
		held    atomic.Uint64 // the seq held back
		holding = make(chan struct{})
		release = make(chan struct{})
	)
	b := testbroker.Start(t, testbroker.Options{AfterAck: func(_, topic string, payload []byte) {
		var r reading
		if topic != "gatewayd/gw/a/humidity" || json.Unmarshal(payload, &r) != nil || r.Seq < 5 {
			return
		}
		if held.CompareAndSwap(0, r.Seq) {
			close(holding)
			select {
			case <-release:
			case <-time.After(brokerLag):
			}
			return
		}
		if r.Seq == held.Load()+2 {
			close(release) // the one after the held one was delivered
		}
	}})
	sub := subscribe(t, b.URL(), "order-sub", "gatewayd/gw/a/#")
	yaml := func(keepalive string) string {
		return strings.Replace(baseYAML(b.URL()), "keepalive: 2s", "keepalive: "+keepalive, 1) + "sensors:\n" + sensorYAML("a", "")
	}
	d := startDaemon(t, yaml("2s"))
	select {
	case <-holding:
	case <-time.After(10 * time.Second):
		t.Fatal("no reading acknowledged and held back")
	}
	if err := d.reload(t, yaml("3s")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "reconnected", func() bool {
		return value(d.Metrics.MQTTConnects) == 2 && d.Session.Connected()
	})
	testbroker.Eventually(t, 10*time.Second, "readings after the held one", func() bool {
		return uint64(len(series(t, b.Messages(readingsOn("gatewayd/gw/a")))["a/humidity"])) > held.Load()+5
	})
	testbroker.Eventually(t, 10*time.Second, "buffer drained", func() bool { return d.Queue.Len() == 0 })
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "every reading at the subscriber", func() bool {
		distinct := map[reading]bool{}
		for _, r := range series(t, sub.messages()) {
			for _, x := range r {
				distinct[reading{Sensor: x.Sensor, Quantity: x.Quantity, Seq: x.Seq}] = true
			}
		}
		return float64(len(distinct)) >= value(d.Metrics.ReadingsTaken)
	})
	t.Logf("seq %d held back after its PUBACK", held.Load())
	for name, msgs := range map[string][]testbroker.Message{"broker": b.Messages(readingsOn("gatewayd/gw/a")), "subscriber": sub.messages()} {
		t.Run(name, func(t *testing.T) { checkNoGaps(t, series(t, msgs), 1) })
	}
}

// TestReloadFailureChangesNothing: a config whose metrics address is taken
// fails the reload as a whole; the daemon goes on with the old one.
func TestReloadFailureChangesNothing(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	base := baseYAML(b.URL())
	d := startDaemon(t, base+"sensors:\n"+sensorYAML("a", ""))
	flowing(t, d, 10)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	// Probe accepts a port in use (it may be the daemon's own); the
	// reload cannot listen on it.
	err = d.reload(t, base+fmt.Sprintf("metrics: {listen: %q}\nsensors:\n", taken.Addr())+sensorYAML("a", "")+sensorYAML("new", ""))
	if err == nil || !strings.Contains(err.Error(), "metrics.listen") {
		t.Fatalf("reload: %v", err)
	}
	if v := value(d.Metrics.ConfigReloadOK); v != 0 {
		t.Errorf("gatewayd_config_last_reload_successful %v after a failure", v)
	}
	flowing(t, d, 10)
	code, body := scrape(t, d, "/metrics")
	if code != 200 || strings.Contains(body, `sensor="new"`) || !strings.Contains(body, "gatewayd_config_last_reload_successful 0") {
		t.Errorf("after a failed reload: %d\n%s", code, grep(body, "sensor=\"new\"\ngatewayd_config"))
	}
	// A refused file: the same.
	if err := d.reload(t, base+"sensors:\n  - {name: a}\n"); err == nil {
		t.Fatal("a sensor without type reloaded")
	}
	flowing(t, d, 10)
	// And a good one afterwards succeeds.
	if err := d.reload(t, base+"sensors:\n"+sensorYAML("a", "")+sensorYAML("new", "")); err != nil {
		t.Fatal(err)
	}
	if v := value(d.Metrics.ConfigReloadOK); v != 1 {
		t.Errorf("gatewayd_config_last_reload_successful %v after a good reload", v)
	}
	flowing(t, d, 10)
	if _, body := scrape(t, d, "/metrics"); !strings.Contains(body, `gatewayd_sensor_reads_total{sensor="new"}`) {
		t.Error("the good reload's sensor is not there")
	}
}

// TestReloadMetricsListen: the new address serves before the old one closes.
func TestReloadMetricsListen(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	base := baseYAML(b.URL()) + "sensors: []\n"
	d := startDaemon(t, base)
	old := d.HTTPAddr()
	if err := d.reload(t, base+"metrics: {listen: '127.0.0.1:0'}\n"); err != nil { // unchanged
		t.Fatal(err)
	}
	if d.HTTPAddr() != old {
		t.Fatal("moved without a change")
	}
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := free.Addr().String()
	free.Close()
	if err := d.reload(t, base+fmt.Sprintf("metrics: {listen: %q}\n", addr)); err != nil {
		t.Fatal(err)
	}
	if d.HTTPAddr() != addr {
		t.Fatalf("serving on %s, want %s", d.HTTPAddr(), addr)
	}
	if code, _ := scrape(t, d, "/metrics"); code != 200 {
		t.Fatalf("/metrics on the new address: %d", code)
	}
	if resp, err := http.Get("http://" + old + "/metrics"); err == nil {
		resp.Body.Close()
		t.Fatal("the old address still serves")
	}
}

// TestReloadLogAndRestartKeys: log.level and log.format apply; buffer.* is
// logged as needing a restart while the rest applies.
func TestReloadLogAndRestartKeys(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	base := baseYAML(b.URL())
	d := startDaemonLogs(t, base+"log: {level: info, format: text}\nsensors: []\n", true)
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	if strings.Contains(d.logs.String(), "level=DEBUG") || !strings.Contains(d.logs.String(), "level=INFO") {
		t.Fatalf("not text at info:\n%s", d.logs.String())
	}
	if err := d.reload(t, base+"log: {level: debug, format: json}\nbuffer: {max_messages: 10}\nsubscriptions: [{topic: 'more/#', qos: 1}]\nsensors:\n"+sensorYAML("a", "")); err != nil {
		t.Fatal(err)
	}
	// Logged before the reload applies, in the old format.
	if !strings.Contains(d.logs.String(), `level=WARN msg="config keys changed that apply only at the next start" keys=buffer.max_messages`) {
		t.Errorf("restart key not logged:\n%s", d.logs.String())
	}
	if !strings.Contains(d.logs.String(), `"level":"INFO","msg":"config reloaded"`) {
		t.Errorf("not JSON after the reload:\n%s", d.logs.String())
	}
	// At debug now: the next reload's subscription is logged.
	if err := d.reload(t, base+"log: {level: debug, format: json}\nsubscriptions: [{topic: 'more/#', qos: 1}, {topic: 'most/#', qos: 1}]\nsensors:\n"+sensorYAML("a", "")); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "a debug line", func() bool {
		return strings.Contains(d.logs.String(), `"level":"DEBUG","msg":"subscribed","component":"session","subscription":"most/#"`)
	})
	flowing(t, d, 20) // the sensor of the same reload runs
	if n := d.Queue.Len(); n > 0 && value(d.Metrics.BufferDropped) > 0 {
		t.Error("the buffer took the new max_messages")
	}
}

// TestReloadPushSensors: push sensors added, changed and removed by a reload;
// their shared receiver keeps running.
func TestReloadPushSensors(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "push-reload", "gatewayd/gw/+/+")
	base := baseYAML(b.URL())
	d := startDaemon(t, base+"sensors:\n  - {name: garden, type: test-push, device: A}\n")
	testbroker.Eventually(t, 10*time.Second, "listening", listeningTo("A"))
	transmit("A", time.Now(), "temperature", 10.0)
	testbroker.Eventually(t, 10*time.Second, "garden", func() bool { return len(series(t, sub.messages())["garden/temperature"]) == 1 })
	starts := radioStarts.Load() // the radio runs: it passed the transmission

	if err := d.reload(t, base+"sensors:\n  - {name: garden, type: test-push, device: A, stale_after: 1h}\n  - {name: shed, type: test-push, device: B}\n"); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "listening to both", listeningTo("A", "B"))
	transmit("A", time.Now(), "temperature", 11.0)
	transmit("B", time.Now(), "temperature", 20.0)
	testbroker.Eventually(t, 10*time.Second, "both", func() bool {
		got := series(t, sub.messages())
		return len(got["garden/temperature"]) == 2 && len(got["shed/temperature"]) == 1
	})
	if err := d.reload(t, base+"sensors:\n  - {name: shed, type: test-push, device: B}\n"); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "garden left", func() bool { return !listeningTo("A")() })
	if n := radioStarts.Load() - starts; n != 0 {
		t.Errorf("the shared receiver was started %d more times", n)
	}
	if g := series(t, sub.messages())["garden/temperature"]; g[1].Seq != 2 {
		t.Errorf("garden's seq after the change: %d", g[1].Seq)
	}
}

// TestReloadManyTimes: 200 reloads in a row while readings flow leave no
// goroutine and no file descriptor behind, and lose or repeat nothing.
func TestReloadManyTimes(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "many-sub", "gatewayd/gw/#")
	base := baseYAML(b.URL())
	configs := []string{
		base + "sensors:\n" + sensorYAML("a", "") + sensorYAML("b", "") + "subscriptions: [{topic: 'x/#', qos: 1}]\n",
		base + "log: {level: warn}\nsensors:\n" + sensorYAML("a", ", offset: {temperature: 1}") + sensorYAML("c", "") + "subscriptions: [{topic: 'y/#', qos: 0}]\n",
	}
	d := startDaemon(t, configs[0])
	flowing(t, d, 20)
	for i := 0; i < 4; i++ { // warm up: whatever is made once
		if err := d.reload(t, configs[(i+1)%2]); err != nil {
			t.Fatal(err)
		}
	}
	goroutines, fds := runtime.NumGoroutine(), openFiles(t)
	for i := 0; i < 200; i++ {
		if err := d.reload(t, configs[(i+1)%2]); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	flowing(t, d, 20)
	var g, f int
	testbroker.Eventually(t, 10*time.Second, "goroutines and files back to where they were", func() bool {
		g, f = runtime.NumGoroutine(), openFiles(t)
		return g <= goroutines+2 && f <= fds
	})
	t.Logf("goroutines %d -> %d, open files %d -> %d after 200 reloads", goroutines, g, fds, f)
	settle(t, d, sub)
	if _, dups := checkNoGaps(t, series(t, readingsOf(sub.messages())), 1); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
	if value(d.Metrics.MQTTConnects) != 1 {
		t.Errorf("%v connects", value(d.Metrics.MQTTConnects))
	}
}

func openFiles(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(fds)
}

var _ = filepath.Join
