//go:build faults

package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
)

// What the durable buffer may write per reading (issue 9): connected to a
// broker that acknowledges within milliseconds, and with the broker away.
const (
	wearConnectedMax = 50 // bytes per reading
	wearAwayMax      = 3  // times the payload's bytes per reading
	wearConnectedFor = 30 * time.Second
	wearAwayFor      = 20 * time.Second
)

// w. Disk wear: what gatewayd writes to the disk per reading with
// buffer.dir, 10 sensors every second (20 readings/s), from /proc/PID/io
// write_bytes of the process (the pages it dirtied: what reaches the block
// device), first connected, then with the broker away; then the broker
// comes back and every reading must arrive.
func TestDiskWear(t *testing.T) {
	row := newRow(t, "w", fmt.Sprintf("disk wear, buffer.dir, 10 sensors @1s: connected %s, broker away %s", wearConnectedFor, wearAwayFor))
	dir := t.TempDir()
	r := newRig(t, "fw", autosaveShort, gwConfig{bufferDir: dir})
	r.config = writeWearConfig(t, "fw", r.broker.url(), dir)
	sizes := newPayloadMeter(t, r.broker.url(), "fw")
	g := startGatewayd(t, r.config)
	g.waitMetrics(15*time.Second, "40 readings published", func(m metricsSnap) bool {
		return m.get("gatewayd_mqtt_messages_published_total") >= 40
	})
	// The leases learn each series' rate over their first renewals.
	sleepUntil(g.started.Add(5 * time.Second))

	connected := measureWear(t, g, wearConnectedFor)
	payload := sizes.mean()
	t.Logf("connected: %s; payload %.1f bytes on average", connected, payload)
	if connected.perReading() > wearConnectedMax {
		t.Errorf("connected: %.1f bytes written per reading, want at most %d", connected.perReading(), wearConnectedMax)
	}

	r.broker.stop(syscall.SIGTERM)
	g.waitLog(time.Now().Add(-time.Second), 10*time.Second, "connection lost")
	// The readings that were on their way at the stop reach the disk
	// within SpillAfter; from then on every reading takes the same path.
	time.Sleep(2 * time.Second)
	away := measureWear(t, g, wearAwayFor)
	t.Logf("broker away: %s, %.2fx the payload", away, away.perReading()/payload)
	if away.perReading() > wearAwayMax*payload {
		t.Errorf("broker away: %.1f bytes written per reading, %.2fx the payload of %.1f bytes; want at most %dx",
			away.perReading(), away.perReading()/payload, payload, wearAwayMax)
	}
	if away.commits < float64(wearAwayFor/(2*time.Second)) {
		t.Errorf("broker away: %v commits in %s: the readings did not go to disk", away.commits, wearAwayFor)
	}

	r.broker.start()
	row.reconnected(g.reconnectedTo(r.broker))
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
	checkReconnected(t, m)
	row.Lost = fmt.Sprintf("%d; written per reading: connected %.1f bytes (%v commits in %s), broker away %.1f bytes = %.2fx the payload of %.1f bytes (%v commits in %s)",
		tl.Missing, connected.perReading(), connected.commits, wearConnectedFor, away.perReading(), away.perReading()/payload, payload, away.commits, wearAwayFor)
}

// wear is what a gatewayd wrote over a window.
type wear struct {
	bytes, readings, commits float64
}

func (w wear) perReading() float64 { return w.bytes / max(1, w.readings) }

func (w wear) String() string {
	return fmt.Sprintf("%.0f bytes written for %.0f readings (%.1f per reading), %.0f commits", w.bytes, w.readings, w.perReading(), w.commits)
}

// measureWear reads write_bytes and the counters, waits d, and reads them
// again.
func measureWear(t *testing.T, g *gatewayd, d time.Duration) wear {
	t.Helper()
	pid := g.cmd.Process.Pid
	m0, b0 := g.scrape(), writeBytes(t, pid)
	time.Sleep(d)
	m1, b1 := g.scrape(), writeBytes(t, pid)
	return wear{
		bytes:    float64(b1 - b0),
		readings: m1.get("gatewayd_readings_taken_total") - m0.get("gatewayd_readings_taken_total"),
		commits:  m1.get("gatewayd_buffer_disk_commits_total") - m0.get("gatewayd_buffer_disk_commits_total"),
	}
}

// writeBytes is what process pid caused to be written to storage so far.
func writeBytes(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/io: %q", pid, l)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/io has no write_bytes", pid)
	return 0
}

// writeWearConfig is writeConfig's config with sensors read every second.
func writeWearConfig(t *testing.T, id, url, bufferDir string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `gateway: {id: %s}
log: {level: info, format: json}
broker:
  urls: [%q]
  keepalive: 2s
  connect_timeout: 2s
  reconnect_max_interval: 1s
  protocol: %d
embedded_broker: {enabled: false}
metrics: {listen: "127.0.0.1:0"}
buffer: {dir: %q}
sensors:
`, id, url, protocol, bufferDir)
	for i := 0; i < numSensors; i++ {
		fmt.Fprintf(&b, "  - {name: s%02d, type: simulated, interval: 1s, seed: %d}\n", i, i+1)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// payloadMeter averages the size of the payloads gatewayd publishes.
type payloadMeter struct {
	mu       sync.Mutex
	n, bytes int
}

func newPayloadMeter(t *testing.T, url, gateway string) *payloadMeter {
	t.Helper()
	pm := &payloadMeter{}
	b := config.Default().Broker
	b.URLs = []string{url}
	b.ClientID = "faults-meter-" + gateway
	b.ReconnectMaxInterval = config.Duration(500 * time.Millisecond)
	b.Availability.Topic = ""
	sess, err := session.New(session.Options{
		Broker:        b,
		Subscriptions: []config.Subscription{{Topic: "gatewayd/" + gateway + "/+/+", QoS: 0}},
		OnMessage: func(m session.Message) {
			pm.mu.Lock()
			pm.n++
			pm.bytes += len(m.Payload)
			pm.mu.Unlock()
		},
	}, slog.New(slog.DiscardHandler), metrics.New("faults-meter"), metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sess.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return pm
}

func (pm *payloadMeter) mean() float64 {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pm.n == 0 {
		return 0
	}
	return float64(pm.bytes) / float64(pm.n)
}
