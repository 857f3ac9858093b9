//go:build faults

package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Every case runs this many simulated sensors at this interval: 10 x 2
// quantities x 10/s = 200 readings per second.
const (
	numSensors     = 10
	sensorInterval = 100 * time.Millisecond
	readingsPerSec = numSensors * 2 * int(time.Second/sensorInterval)
)

// gwConfig is what varies between the cases' gatewayd configs.
type gwConfig struct {
	id          string // gateway.id: gatewayd/<id>/<sensor>/<quantity>
	url         string
	maxMessages int    // buffer.max_messages; 0: the default
	bufferDir   string // buffer.dir; "": in memory
}

// protocol is the MQTT protocol level every case runs gatewayd with:
// GATEWAYD_FAULTS_PROTOCOL=5 for MQTT 5, else 4 (3.1.1). CI runs both.
var protocol = func() int {
	if os.Getenv("GATEWAYD_FAULTS_PROTOCOL") == "5" {
		return 5
	}
	return 4
}()

// writeConfig writes a gatewayd config file into a new temp dir.
func writeConfig(t *testing.T, c gwConfig) string {
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
buffer:
`, c.id, c.url, protocol)
	if c.maxMessages > 0 {
		fmt.Fprintf(&b, "  max_messages: %d\n", c.maxMessages)
	}
	if c.bufferDir != "" {
		fmt.Fprintf(&b, "  dir: %q\n", c.bufferDir)
	}
	b.WriteString("sensors:\n")
	for i := 0; i < numSensors; i++ {
		fmt.Fprintf(&b, "  - {name: s%02d, type: simulated, interval: %s, seed: %d}\n", i, sensorInterval, i+1)
	}
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// logLine is one line of gatewayd's JSON log.
type logLine struct {
	Time    time.Time `json:"time"`
	Level   string    `json:"level"`
	Msg     string    `json:"msg"`
	Err     string    `json:"err"`
	Metrics string    `json:"metrics"`
	Records int       `json:"records"`
	Lease   string    `json:"lease"`
}

// gatewayd is one gatewayd process, its log parsed as it comes.
type gatewayd struct {
	t        *testing.T
	cmd      *exec.Cmd
	logPath  string
	started  time.Time
	exited   chan struct{}
	exitCode int

	mu         sync.Mutex
	logs       []logLine
	metricsURL string
	// inherited is how many readings the durable buffer held at start:
	// taken by an earlier process, published (and counted) by this one.
	inherited int
}

// startGatewayd runs gatewayd with the config and waits until it logged
// "gatewayd started" (which names its metrics address).
func startGatewayd(t *testing.T, config string) *gatewayd {
	t.Helper()
	g := &gatewayd{t: t, exited: make(chan struct{})}
	g.logPath = filepath.Join(t.TempDir(), "gatewayd.log")
	logFile, err := os.Create(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	g.cmd = exec.Command(gatewaydBin, "-config", config)
	stderr, err := g.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	g.started = time.Now()
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(g.exited)
		g.readLog(io.TeeReader(stderr, logFile))
		logFile.Close()
		err := g.cmd.Wait()
		g.exitCode = g.cmd.ProcessState.ExitCode() // -1 when killed by a signal
		if err != nil && g.exitCode == 0 {
			g.exitCode = -2
		}
	}()
	t.Cleanup(func() {
		if g.running() {
			g.cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("gatewayd log (pid %d):\n%s", g.cmd.Process.Pid, tail(g.logPath, 40))
		}
	})
	g.waitLog(g.started, 15*time.Second, "gatewayd started")
	return g
}

func (g *gatewayd) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		g.mu.Lock()
		g.logs = append(g.logs, l)
		switch l.Msg {
		case "gatewayd started":
			g.metricsURL = l.Metrics
		case "buffer store opened":
			g.inherited = l.Records
		}
		g.mu.Unlock()
	}
}

func (g *gatewayd) running() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

// findLog returns the first line at or after since with one of msgs.
func (g *gatewayd) findLog(since time.Time, msgs ...string) (logLine, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range g.logs {
		if l.Time.Before(since) {
			continue
		}
		for _, m := range msgs {
			if l.Msg == m {
				return l, true
			}
		}
	}
	return logLine{}, false
}

// waitLog waits for a log line at or after since with one of msgs.
func (g *gatewayd) waitLog(since time.Time, timeout time.Duration, msgs ...string) logLine {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := g.findLog(since, msgs...); ok {
			return l
		}
		if !g.running() {
			g.t.Fatalf("gatewayd exited (code %d) while waiting for log %q", g.exitCode, msgs)
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no log %q within %s", msgs, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reconnectedAfter waits for the "connected" line after since and returns
// how long after since it came.
func (g *gatewayd) reconnectedAfter(since time.Time) time.Duration {
	g.t.Helper()
	return g.waitLog(since, 20*time.Second, "connected").Time.Sub(since)
}

// reconnectedTo waits until gatewayd connected to the (re)started broker
// and returns how long after the broker accepted connections it did; 0
// when gatewayd was quicker than the test to see the broker listening.
func (g *gatewayd) reconnectedTo(b *broker) time.Duration {
	g.t.Helper()
	return max(0, g.waitLog(b.launched, 20*time.Second, "connected").Time.Sub(b.listening))
}

func (g *gatewayd) signal(sig syscall.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatalf("gatewayd: %v: %v", sig, err)
	}
}

// wait waits until the process has exited and returns its exit code (-1
// when a signal killed it).
func (g *gatewayd) wait(timeout time.Duration) int {
	g.t.Helper()
	select {
	case <-g.exited:
		return g.exitCode
	case <-time.After(timeout):
		g.t.Fatalf("gatewayd still running after %s", timeout)
		return 0
	}
}

// metricsSnap is one scrape of /metrics: sample (with its labels) -> value.
type metricsSnap map[string]float64

func (m metricsSnap) get(name string) float64 { return m[name] }

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (g *gatewayd) scrapeErr() (metricsSnap, error) {
	g.mu.Lock()
	url := g.metricsURL
	g.mu.Unlock()
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	m := metricsSnap{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad sample line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample line %q", line)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

func (g *gatewayd) scrape() metricsSnap {
	g.t.Helper()
	m, err := g.scrapeErr()
	if err != nil {
		g.t.Fatalf("scraping gatewayd: %v", err)
	}
	return m
}

// get fetches a path of gatewayd's HTTP server and returns the status.
func (g *gatewayd) get(path string) int {
	g.t.Helper()
	g.mu.Lock()
	url := strings.TrimSuffix(g.metricsURL, "/metrics") + path
	g.mu.Unlock()
	resp, err := httpClient.Get(url)
	if err != nil {
		g.t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// waitMetrics scrapes every 20ms until cond holds, and returns that scrape.
func (g *gatewayd) waitMetrics(timeout time.Duration, what string, cond func(metricsSnap) bool) metricsSnap {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	var last metricsSnap
	var lastErr error
	for {
		m, err := g.scrapeErr()
		if err == nil {
			last = m
			if cond(m) {
				return m
			}
		} else {
			lastErr = err
		}
		if !g.running() {
			g.t.Fatalf("gatewayd exited (code %d) while waiting for: %s", g.exitCode, what)
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("timed out after %s waiting for: %s\nlast scrape: %s (err %v)", timeout, what, last.summary(), lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// summary is the counters that matter here, for failure messages.
func (m metricsSnap) summary() string {
	var b strings.Builder
	for _, k := range []string{
		"gatewayd_mqtt_connected", "gatewayd_mqtt_connects_total", "gatewayd_mqtt_connection_lost_total",
		"gatewayd_readings_taken_total", "gatewayd_mqtt_messages_published_total", "gatewayd_buffer_dropped_total",
		"gatewayd_buffer_messages", "gatewayd_mqtt_resent_total", "gatewayd_buffer_durable", "gatewayd_buffer_corrupt_total",
	} {
		fmt.Fprintf(&b, "%s=%g ", strings.TrimPrefix(k, "gatewayd_"), m[k])
	}
	return b.String()
}

// warmUp waits until readings flow to the broker.
func warmUp(g *gatewayd) metricsSnap {
	g.t.Helper()
	return g.waitMetrics(15*time.Second, "200 readings published", func(m metricsSnap) bool {
		return m.get("gatewayd_mqtt_messages_published_total") >= 200
	})
}

// takenAtLeast waits until n more readings were taken than in from.
func takenAtLeast(g *gatewayd, from metricsSnap, n float64) metricsSnap {
	g.t.Helper()
	want := from.get("gatewayd_readings_taken_total") + n
	return g.waitMetrics(20*time.Second, fmt.Sprintf("%.0f readings taken", want), func(m metricsSnap) bool {
		return m.get("gatewayd_readings_taken_total") >= want
	})
}

// quiet waits for a scrape in which the backlog is gone and every reading
// taken is accounted for: published, dropped, or one of the few still in
// flight (gatewayd spreads its sensors' reads over the interval, so at 200
// readings/s one is nearly always on its way). That scrape's counters are
// the case's final numbers. (Readings inherited from a durable buffer were
// taken by the previous process and are published by this one.)
func quiet(g *gatewayd) metricsSnap {
	g.t.Helper()
	g.mu.Lock()
	inherited := float64(g.inherited)
	g.mu.Unlock()
	return g.waitMetrics(30*time.Second, "backlog gone and published + dropped + waiting == taken", func(m metricsSnap) bool {
		waiting := m.get("gatewayd_buffer_messages")
		return m.get("gatewayd_mqtt_connected") == 1 && waiting <= inFlightAtRest &&
			m.get("gatewayd_mqtt_messages_published_total")+m.get("gatewayd_buffer_dropped_total")+refused(m)+waiting == m.get("gatewayd_readings_taken_total")+inherited
	})
}

// refused is the readings the broker refused (MQTT 5), all reasons.
func refused(m metricsSnap) float64 {
	n := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, "gatewayd_mqtt_publish_refused_total{") {
			n += v
		}
	}
	return n
}

// inFlightAtRest bounds the readings waiting in a scrape of a gatewayd that
// has no backlog: those taken in the last few milliseconds, on their way.
const inFlightAtRest = 10

// terminate stops gatewayd with SIGTERM and checks it exits 0 within 10 s.
func terminate(g *gatewayd) {
	g.t.Helper()
	g.signal(syscall.SIGTERM)
	if code := g.wait(10 * time.Second); code != 0 {
		g.t.Errorf("gatewayd exited %d after SIGTERM, want 0", code)
	}
	if l, ok := g.findLog(g.started, "readings not published before shutdown"); ok {
		g.t.Errorf("at shutdown: %s", l.Msg)
	}
}
