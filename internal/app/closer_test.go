package app_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// A pulled source type that holds something (as a modbus sensor holds its
// share of a serial port) and so implements io.Closer: the core must close
// it once when the sensor is removed or replaced by a reload, when a reload
// that built it fails, and at shutdown; never while it still runs.

var closed = struct {
	sync.Mutex
	n map[string]int // closes by the sensor's name
}{n: map[string]int{}}

func closes(name string) int {
	closed.Lock()
	defer closed.Unlock()
	return closed.n[name]
}

type closerConfig struct {
	Fail bool `yaml:"fail"`
}

func (c *closerConfig) Validate() error { return nil }
func (c *closerConfig) New(env sensors.Env) (sensors.Source, error) {
	if c.Fail {
		return nil, errors.New("cannot build")
	}
	return &closerSource{name: env.Name}, nil
}

type closerSource struct {
	name string
	mu   sync.Mutex
	done bool
}

func (s *closerSource) Read(ctx context.Context) ([]sensors.Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return nil, errors.New("read after Close")
	}
	return []sensors.Reading{{Quantity: sensors.Temperature, Value: 20}}, nil
}

func (s *closerSource) Close() error {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
	closed.Lock()
	closed.n[s.name]++
	closed.Unlock()
	return nil
}

func init() { sensors.Register("test-closer", func() sensors.Config { return &closerConfig{} }) }

func TestSourcesClosed(t *testing.T) {
	closed.Lock()
	closed.n = map[string]int{}
	closed.Unlock()
	b := testbroker.Start(t, testbroker.Options{})
	base := baseYAML(b.URL())
	d := startDaemon(t, base+`sensors:
  - {name: close-a, type: test-closer, interval: 20ms}
  - {name: close-b, type: test-closer, interval: 20ms}
`)
	testbroker.Eventually(t, 10*time.Second, "close-b read", func() bool {
		_, body := scrape(t, d, "/metrics")
		return strings.Contains(body, `gatewayd_sensor_reads_total{sensor="close-b"}`)
	})
	// a removed, b changed: both old sources closed, once.
	if err := d.reload(t, base+`sensors:
  - {name: close-b, type: test-closer, interval: 30ms}
`); err != nil {
		t.Fatal(err)
	}
	if closes("close-a") != 1 || closes("close-b") != 1 {
		t.Fatalf("after the reload: closes a=%d b=%d, want 1 and 1", closes("close-a"), closes("close-b"))
	}
	// A reload that fails after building close-c: close-c closed, the
	// running close-b untouched.
	if err := d.reload(t, base+`sensors:
  - {name: close-b, type: test-closer, interval: 30ms}
  - {name: close-c, type: test-closer, interval: 30ms}
  - {name: close-d, type: test-closer, fail: true}
`); err == nil {
		t.Fatal("a reload with a source that cannot be built succeeded")
	}
	if closes("close-c") != 1 || closes("close-b") != 1 {
		t.Fatalf("after the failed reload: closes b=%d c=%d", closes("close-b"), closes("close-c"))
	}
	if err := d.stop(); err != nil {
		t.Fatal(err)
	}
	if closes("close-b") != 2 {
		t.Fatalf("after shutdown: close-b closed %d times in all, want 2 (the old and the running one)", closes("close-b"))
	}
	if strings.Contains(d.logs.String(), "read after Close") {
		t.Fatal("a source was read after it was closed")
	}
}
