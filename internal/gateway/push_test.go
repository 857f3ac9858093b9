package gateway

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// scriptedPusher emits what its config says at start, if anything, and then
// what the test sends on its channel.
type scriptedPusher struct {
	sensors.PushOnly
	first []sensors.Reading
	ch    chan []sensors.Reading
}

func (s *scriptedPusher) Run(ctx context.Context, emit func([]sensors.Reading)) error {
	if s.first != nil {
		emit(s.first)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case rs := <-s.ch:
			emit(rs)
		}
	}
}

type pusherConfig struct {
	Temperature *float64 `yaml:"temperature"` // emitted at start when set
}

func (*pusherConfig) Validate() error { return nil }
func (*pusherConfig) Pushes()         {}
func (c *pusherConfig) New(env sensors.Env) (sensors.Source, error) {
	s := &scriptedPusher{ch: make(chan []sensors.Reading)}
	if c.Temperature != nil {
		s.first = []sensors.Reading{{Quantity: "temperature", Value: *c.Temperature, Time: time.Unix(1_700_000_000, 0)}}
	}
	pushersMu.Lock()
	pushers[env.Name] = s
	pushersMu.Unlock()
	return s, nil
}

var (
	pushersMu sync.Mutex
	pushers   = map[string]*scriptedPusher{}
)

func init() { sensors.Register("test-pusher", func() sensors.Config { return &pusherConfig{} }) }

// TestOnceWaitsForPushSensors: -once prints a push sensor's first
// transmission, with its device time, and names the one not heard.
func TestOnceWaitsForPushSensors(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`gateway: {id: gw}
sensors:
  - {name: heard, type: test-pusher, temperature: 21.5}
  - {name: silent, type: test-pusher}
  - {name: pulled, type: simulated, seed: 1}
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPoller(cfg, spool.NewMemory(10, 1<<20, 1), metrics.New("t"), slog.New(slog.DiscardHandler), metrics.NewLiveness(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	start := time.Now()
	err = p.ReadOnce(context.Background(), &out, 300*time.Millisecond)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %s", took)
	}
	if err == nil || err.Error() != `sensor "silent": not heard within 300ms` {
		t.Errorf("err = %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], `gatewayd/gw/heard/temperature {"sensor":"heard","quantity":"temperature","value":21.5,"unit":"°C","time":"2023-11-14T22:13:20.000Z","seq":1}`) ||
		!strings.HasPrefix(lines[1], "gatewayd/gw/pulled/temperature ") {
		t.Errorf("output:\n%s", out.String())
	}
}
