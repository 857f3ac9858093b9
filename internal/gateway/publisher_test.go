package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/spool"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runPublisher runs a session of protocol proto to url and a publisher of
// q over it until the test ends.
func runPublisher(t *testing.T, url string, proto int, q spool.Queue) (*metrics.Metrics, *lockedBuffer) {
	t.Helper()
	m := metrics.New("test")
	logs := &lockedBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	live := metrics.NewLiveness(time.Hour)
	b := config.Default().Broker
	b.URLs, b.ClientID, b.Availability.Topic = []string{url}, "pub", ""
	b.Keepalive, b.ConnectTimeout = config.Duration(2*time.Second), config.Duration(time.Second)
	sess, err := session.New(session.Options{Broker: b, Protocol: proto}, log, m, live)
	if err != nil {
		t.Fatal(err)
	}
	p := NewPublisher(q, sess, 100, 2*time.Second, m, log, live)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sess.Run(ctx) }()
	go func() { defer wg.Done(); p.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return m, logs
}

// TestPublisherDropsRefusals: on MQTT 5, a reading the broker refuses
// leaves the buffer counted as refused, and does not hold back the
// readings behind it; the others are published, in order.
func TestPublisherDropsRefusals(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{DenyPublish: []string{"gw/denied/temperature"}})
	q := spool.NewMemory(1000, 1<<20, 1)
	const n = 200
	for i := range n {
		topic := "gw/ok/temperature"
		if i%2 == 0 {
			topic = "gw/denied/temperature"
		}
		q.Append(&spool.Record{Topic: topic, Payload: []byte(fmt.Sprintf(`{"i":%d}`, i)), QoS: 1})
	}
	m, logs := runPublisher(t, b.URL(), 5, q)
	testbroker.Eventually(t, 10*time.Second, "buffer empty", func() bool { return q.Len() == 0 })
	refused := testutil.ToFloat64(m.MQTTPublishRefused.WithLabelValues("not_authorized"))
	published := testutil.ToFloat64(m.MQTTPublished)
	if refused != n/2 || published != n/2 || testutil.ToFloat64(m.MQTTPublishFailures) != 0 {
		t.Errorf("refused %v published %v failures %v", refused, published, testutil.ToFloat64(m.MQTTPublishFailures))
	}
	var got []string
	mine := func(s string) bool { return strings.HasPrefix(s, "gw/") }
	// mochi records a message just after its PUBACK.
	testbroker.Eventually(t, 10*time.Second, "all at the broker", func() bool { return len(b.Messages(mine)) >= n/2 })
	for _, msg := range b.Messages(mine) {
		got = append(got, strings.Trim(string(msg.Payload), `{}"i:`))
		if msg.ContentType != "application/json" || msg.PayloadFormat != 1 {
			t.Fatalf("properties: %+v", msg)
		}
	}
	if len(got) != n/2 || got[0] != "1" || got[len(got)-1] != fmt.Sprint(n-1) {
		t.Errorf("broker got %d readings: %v ...", len(got), got[:min(5, len(got))])
	}
	if c := strings.Count(logs.String(), `"msg":"the broker refused a reading; dropped"`); c != 1 {
		t.Errorf("%d refusal warnings for one topic within a minute, want 1", c)
	}
	if !strings.Contains(logs.String(), `"reason":"not_authorized"`) {
		t.Errorf("reason not logged:\n%s", logs)
	}
}

// TestPublisherReceiveMaximum: with a broker that takes 2 publishes in
// flight, the publisher (max_inflight 100) stays within them: mochi would
// disconnect it otherwise.
func TestPublisherReceiveMaximum(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{ReceiveMaximum: 2})
	q := spool.NewMemory(1000, 1<<20, 1)
	for i := range 300 {
		q.Append(&spool.Record{Topic: "gw/s/t", Payload: []byte(fmt.Sprint(i)), QoS: 1})
	}
	m, _ := runPublisher(t, b.URL(), 5, q)
	testbroker.Eventually(t, 10*time.Second, "buffer empty", func() bool { return q.Len() == 0 })
	if testutil.ToFloat64(m.MQTTConnectionLost) != 0 || testutil.ToFloat64(m.MQTTPublished) != 300 {
		t.Errorf("lost %v published %v", testutil.ToFloat64(m.MQTTConnectionLost), testutil.ToFloat64(m.MQTTPublished))
	}
}
