package session

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// protocolsUnderTest are the clients every contract test runs on, the way
// spool's queue tests run on every queue.
var protocolsUnderTest = []int{4, 5}

// eachProtocol runs test once per protocol, as a subtest "v4" / "v5".
func eachProtocol(t *testing.T, test func(t *testing.T, proto int)) {
	for _, p := range protocolsUnderTest {
		t.Run(fmt.Sprintf("v%d", p), func(t *testing.T) { test(t, p) })
	}
}

// syncBuffer is a log sink that tests read while the session writes.
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

// count is how many log lines hold every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	n := 0
	for _, l := range strings.Split(s.String(), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(l, sub)
		}
		if all && l != "" {
			n++
		}
	}
	return n
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	if testing.Verbose() {
		w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	}
	return len(p), nil
}

// running is one session under test.
type running struct {
	*Session
	t    *testing.T
	m    *metrics.Metrics
	logs *syncBuffer
	stop func()

	mu   sync.Mutex
	msgs []Message
}

// brokerOptions are fast settings for tests: keepalive 2s, connect timeout
// 1s, retries within 500ms.
func brokerOptions(url, clientID string) config.Broker {
	b := config.Default().Broker
	b.URLs = []string{url}
	b.ClientID = clientID
	b.Keepalive = config.Duration(2 * time.Second)
	b.ConnectTimeout = config.Duration(time.Second)
	b.ReconnectMaxInterval = config.Duration(500 * time.Millisecond)
	b.Availability.Topic = "gatewayd/" + clientID + "/status"
	return b
}

// start runs a session with o (OnMessage collected) until the test ends.
func start(t *testing.T, o Options) *running {
	t.Helper()
	r := &running{t: t, m: metrics.New("test"), logs: &syncBuffer{}}
	if o.OnMessage == nil {
		o.OnMessage = r.collect
	}
	log := slog.New(slog.NewJSONHandler(io.MultiWriter(r.logs, testLogWriter{t}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(o, log, r.m, metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r.Session = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	var once sync.Once
	r.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("session did not stop within 10s")
			}
		})
	}
	t.Cleanup(r.stop)
	return r
}

func (r *running) collect(m Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *running) messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...)
}

// conn waits for a connection and returns it.
func (r *running) conn() *Conn {
	r.t.Helper()
	var c *Conn
	testbroker.Eventually(r.t, 10*time.Second, "connected", func() bool {
		c, _ = r.Current()
		return c != nil && !c.isLost()
	})
	return c
}

// subscribed waits until the broker holds filter for clientID. A session
// requests its subscriptions in the background, after the CONNACK: a
// message published before the broker has the subscription is delivered
// to no one, so a test that publishes what its own session should get
// waits for this first.
func subscribed(t *testing.T, b *testbroker.Broker, clientID, filter string) {
	t.Helper()
	testbroker.Eventually(t, 10*time.Second, "subscribed to "+filter, func() bool {
		return slices.Contains(b.Subscriptions(clientID), filter)
	})
}

// publish publishes and waits for the outcome.
func publish(t *testing.T, c *Conn, topic string, qos byte, retain bool, flags Flags, payload string) error {
	t.Helper()
	tok := c.PublishWith(topic, qos, retain, flags, []byte(payload))
	select {
	case <-tok.Done():
		return tok.Error()
	case <-c.Lost():
		return fmt.Errorf("connection lost: %w", c.Err())
	case <-time.After(10 * time.Second):
		t.Fatalf("publish on %s: no outcome within 10s", topic)
		return nil
	}
}

func value(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
