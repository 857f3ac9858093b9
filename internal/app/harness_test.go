package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatewayd/gatewayd/internal/app"
	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/logging"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// syncBuffer is a log sink that tests read while the daemon writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemon is one in-process gatewayd, wired exactly as cmd/gatewayd wires it.
type daemon struct {
	*app.App
	logs *syncBuffer
	stop func() error // SIGTERM, in effect: returns Run's error
}

// startDaemon loads yaml (with "metrics: {listen: 127.0.0.1:0}" added when
// it has no metrics key) and runs it until the test ends or stop is called.
func startDaemon(t *testing.T, yaml string) *daemon {
	t.Helper()
	return startDaemonLogs(t, yaml, false)
}

// startDaemonLogs is startDaemon; with logSwitch the daemon logs as
// cmd/gatewayd does, through a logging.Switch at the config's log.level
// and log.format (which a reload changes), instead of JSON at debug.
func startDaemonLogs(t *testing.T, yaml string, logSwitch bool) *daemon {
	t.Helper()
	cfg, err := parseConfig(t, yaml)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &syncBuffer{}
	w := io.MultiWriter(logs, testLogWriter{t})
	log := slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sw *logging.Switch
	if logSwitch {
		sw = logging.New(w, cfg.Log)
		log = sw.Logger()
	}
	a, err := app.New(cfg, log, "test")
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	a.Logs = sw
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, nil) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("daemon did not stop within 15s")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() && !testing.Verbose() {
			// A failure in CI comes with what the daemon said.
			t.Logf("the daemon's log (last %d bytes):\n%s", logTail, tail(logs.String(), logTail))
		}
	})
	return &daemon{App: a, logs: logs, stop: stop}
}

// parseConfig parses yaml as the daemon's file (with "metrics: {listen:
// 127.0.0.1:0}" added when it has no metrics key) and probes it, as
// config.Load does.
func parseConfig(t *testing.T, yaml string) (*config.Config, error) {
	if !strings.Contains(yaml, "metrics:") {
		yaml += "\nmetrics: {listen: '127.0.0.1:0'}\n"
	}
	cfg, err := config.Parse(t.Name()+".yaml", []byte(yaml), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return cfg, config.Probe(cfg)
}

// reload applies yaml as the daemon's new config file, as SIGHUP does.
func (d *daemon) reload(t *testing.T, yaml string) error {
	t.Helper()
	cfg, err := parseConfig(t, yaml)
	if err != nil {
		d.ReloadRefused()
		return err
	}
	return d.Reload(context.Background(), cfg)
}

// logTail is how much of the daemon's log a failed test shows.
const logTail = 64 << 10

// tail is the end of s, at most n bytes, from the start of a line.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// testLogWriter shows the daemon's log in verbose test output only.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

func value(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// reading is a JSON payload as SPEC.md defines it.
type reading struct {
	Sensor   string  `json:"sensor"`
	Quantity string  `json:"quantity"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Time     string  `json:"time"`
	Seq      uint64  `json:"seq"`
}

// series groups the readings the broker received by sensor/quantity, in
// arrival order; it fails on a payload that is not a reading.
func series(t *testing.T, msgs []testbroker.Message) map[string][]reading {
	t.Helper()
	out := map[string][]reading{}
	for _, m := range msgs {
		var r reading
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			t.Fatalf("payload on %s is not a reading: %q", m.Topic, m.Payload)
		}
		k := r.Sensor + "/" + r.Quantity
		out[k] = append(out[k], r)
	}
	return out
}

// checkNoGaps asserts that every series holds every seq from its first to
// its last, and that each seq first arrived after its predecessor: nothing
// lost, order kept (duplicates, from resends, are allowed and counted).
func checkNoGaps(t *testing.T, got map[string][]reading, from uint64) (distinct, dups int) {
	t.Helper()
	if len(got) == 0 {
		t.Fatal("no readings at all")
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		seen := map[uint64]bool{}
		var last uint64
		for _, r := range got[k] {
			if seen[r.Seq] {
				dups++
				continue
			}
			if r.Seq >= from && last >= from && r.Seq != last+1 {
				t.Errorf("%s: seq %d first arrived after %d", k, r.Seq, last)
			}
			seen[r.Seq] = true
			last = max(last, r.Seq)
		}
		for s := from; s <= last; s++ {
			if !seen[s] {
				t.Errorf("%s: seq %d missing (of %d..%d)", k, s, from, last)
			}
		}
		distinct += len(seen)
	}
	return distinct, dups
}

// readingsOn keeps the reading topics under prefix (not the status topic).
func readingsOn(prefix string) func(string) bool {
	return func(topic string) bool {
		return strings.HasPrefix(topic, prefix) && !strings.HasSuffix(topic, "/status")
	}
}

// scrape GETs a path of the daemon's HTTP server.
func scrape(t *testing.T, d *daemon, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// subscriber is a real MQTT client (gatewayd's own session package) with a
// persistent session, collecting what it receives.
type subscriber struct {
	mu   sync.Mutex
	msgs []session.Message
	sess *session.Session
}

func subscribe(t *testing.T, url, clientID, filter string) *subscriber {
	t.Helper()
	s := &subscriber{}
	logs := &syncBuffer{}
	b := config.Default().Broker
	b.URLs = []string{url}
	b.ClientID = clientID
	b.Availability.Topic = ""
	sess, err := session.New(session.Options{
		Broker:        b,
		Subscriptions: []config.Subscription{{Topic: filter, QoS: 1}},
		OnMessage: func(m session.Message) {
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			s.mu.Unlock()
		},
	}, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), metrics.New("sub"), metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s.sess = sess
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sess.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// Connected is not enough: the session subscribes in the background,
	// and what the broker gets before it holds the subscription is not
	// delivered to the subscriber. Its SUBACK is.
	testbroker.Eventually(t, 10*time.Second, "subscriber subscribed", func() bool {
		return strings.Contains(logs.String(), `"msg":"subscribed"`)
	})
	return s
}

// sees is a condition for testbroker.Eventually: the subscriber has
// received a reading of value on topic.
func (s *subscriber) sees(t *testing.T, topic string, value float64) func() bool {
	return func() bool {
		for _, m := range s.messages() {
			if m.Topic == topic {
				for _, r := range series(t, []testbroker.Message{m}) {
					if r[0].Value == value {
						return true
					}
				}
			}
		}
		return false
	}
}

func (s *subscriber) messages() []testbroker.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]testbroker.Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = testbroker.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retained}
	}
	return out
}

// sensorsYAML is n simulated sensors reading every interval.
func sensorsYAML(n int, interval string) string {
	var b strings.Builder
	b.WriteString("sensors:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {name: s%d, type: simulated, interval: %s, seed: %d}\n", i, interval, i+1)
	}
	return b.String()
}
