package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// scripted is a source whose readings the test sets; the poller's own
// behaviour (calibration, range checks, deadband, timeouts) is under test,
// not a sensor's. Real sources are tested in internal/sensors.
type scripted struct {
	mu    sync.Mutex
	next  []sensors.Reading
	err   error
	block chan struct{} // when set, Read waits on it or on ctx
	reads int
}

func (s *scripted) set(err error, rs ...sensors.Reading) {
	s.mu.Lock()
	s.next, s.err = rs, err
	s.mu.Unlock()
}

func (s *scripted) Read(ctx context.Context) ([]sensors.Reading, error) {
	s.mu.Lock()
	block := s.block
	s.reads++
	rs, err := s.next, s.err
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return rs, err
}

var (
	scriptedMu      sync.Mutex
	scriptedSources = map[string]*scripted{}
)

type scriptedConfig struct{}

func (scriptedConfig) Validate() error { return nil }
func (scriptedConfig) New(env sensors.Env) (sensors.Source, error) {
	scriptedMu.Lock()
	defer scriptedMu.Unlock()
	s := &scripted{}
	scriptedSources[env.Name] = s
	return s, nil
}

func init() { sensors.Register("test-scripted", func() sensors.Config { return scriptedConfig{} }) }

type pollerFixture struct {
	p   *Poller
	q   *spool.Memory
	m   *metrics.Metrics
	src *scripted
	cfg *config.Config
}

func newPollerFixture(t *testing.T, yaml string) *pollerFixture {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte("gateway: {id: gw}\nmetrics: {listen: '127.0.0.1:0'}\n"+yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New("test")
	q := spool.NewMemory(1000, 1<<20, 1)
	p, err := NewPoller(cfg, q, m, slog.New(slog.DiscardHandler), metrics.NewLiveness(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	scriptedMu.Lock()
	src := scriptedSources[cfg.Sensors[0].Name]
	scriptedMu.Unlock()
	return &pollerFixture{p: p, q: q, m: m, src: src, cfg: cfg}
}

func (f *pollerFixture) stats(sensor string) *metrics.SensorStats {
	for _, s := range f.p.sensors {
		if s.cfg.Name == sensor {
			return s.stats
		}
	}
	panic("no sensor " + sensor)
}

func (f *pollerFixture) series(sensor, quantity string) *sensorSeries {
	for _, s := range f.p.sensors {
		if s.cfg.Name == sensor {
			return s.seriesFor(quantity)
		}
	}
	panic("no sensor " + sensor)
}

func (f *pollerFixture) value(sensor, quantity string) float64 {
	v, _ := f.series(sensor, quantity).Value()
	return v
}

func (f *pollerFixture) records() []spool.Record {
	return f.q.Peek(0, make([]spool.Record, 0, 1000))
}

func TestPollerCalibratesAndRejects(t *testing.T) {
	f := newPollerFixture(t, `sensors:
  - name: cal
    type: test-scripted
    offset: {temperature: -0.5}
    scale: {humidity: 1.1}
`)
	s := f.p.sensors[0]
	f.src.set(nil,
		sensors.Reading{Quantity: "temperature", Value: 21.5},
		sensors.Reading{Quantity: "humidity", Value: 50},
		sensors.Reading{Quantity: "pressure", Value: -3}, // below its range
		sensors.Reading{Quantity: "Bad Name", Value: 1},  // not a quantity name
		sensors.Reading{Quantity: "co2", Value: 415},     // unknown quantity: published, no unit
	)
	f.p.read(context.Background(), s)
	recs := f.records()
	if len(recs) != 3 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	want := map[string]float64{"gatewayd/gw/cal/temperature": 21, "gatewayd/gw/cal/humidity": 55, "gatewayd/gw/cal/co2": 415}
	for _, r := range recs {
		var v struct{ Value float64 }
		json.Unmarshal(r.Payload, &v)
		if w, ok := want[r.Topic]; !ok || v.Value != w {
			t.Errorf("%s: %s", r.Topic, r.Payload)
		}
	}
	if got := f.series("cal", "pressure").Rejected.Load(); got != 1 {
		t.Errorf("pressure rejected %v", got)
	}
	if got := f.series("cal", "invalid").Rejected.Load(); got != 1 {
		t.Errorf("invalid quantity rejected %v", got)
	}
	if got := f.value("cal", "humidity"); got != 55 {
		t.Errorf("sensor_value = %v", got)
	}
	// Humidity past 100 after calibration is rejected, not published.
	f.src.set(nil, sensors.Reading{Quantity: "humidity", Value: 95})
	f.p.read(context.Background(), s)
	if got := f.series("cal", "humidity").Rejected.Load(); got != 1 {
		t.Errorf("humidity 104.5 not rejected: %v", got)
	}
}

func TestPollerHealthMetrics(t *testing.T) {
	f := newPollerFixture(t, "sensors: [{name: h, type: test-scripted}]\n")
	s := f.p.sensors[0]
	f.src.set(nil, sensors.Reading{Quantity: "temperature", Value: 20})
	before := time.Now()
	f.p.read(context.Background(), s)
	if st := f.stats("h"); !st.Up() || st.Reads.Load() != 1 {
		t.Fatal("success not counted")
	}
	if ts := f.stats("h").LastSuccess(); ts < before.UnixNano() {
		t.Fatalf("last success %v", ts)
	}
	var logs strings.Builder
	f.p.in.log = slog.New(slog.NewTextHandler(&logs, nil))
	f.src.set(errors.New("EIO"))
	f.p.read(context.Background(), s)
	if !strings.Contains(logs.String(), "err=EIO") || strings.Contains(logs.String(), "timed out") {
		t.Errorf("a plain read error logged as %q", logs.String())
	}
	f.src.set(nil) // no readings at all is a failure too
	f.p.read(context.Background(), s)
	if st := f.stats("h"); st.Up() || st.ReadErrors.Load() != 2 {
		t.Fatal("failures not counted")
	}
}

func TestPollerDeadbandAndSeq(t *testing.T) {
	f := newPollerFixture(t, "sensors: [{name: d, type: test-scripted, deadband: {temperature: 0.5}}]\n")
	s := f.p.sensors[0]
	for _, v := range []float64{20, 20.2, 20.4, 21, 21.1, 20.4} {
		f.src.set(nil, sensors.Reading{Quantity: "temperature", Value: v}, sensors.Reading{Quantity: "humidity", Value: 40})
		f.p.read(context.Background(), s)
	}
	var temps, seqs []string
	for _, r := range f.records() {
		var v struct {
			Value float64
			Seq   uint64
		}
		json.Unmarshal(r.Payload, &v)
		if strings.HasSuffix(r.Topic, "/temperature") {
			temps = append(temps, fmt.Sprint(v.Value))
			seqs = append(seqs, fmt.Sprint(v.Seq))
		}
	}
	if strings.Join(temps, " ") != "20 21 20.4" || strings.Join(seqs, " ") != "1 2 3" {
		t.Fatalf("published %v with seqs %v", temps, seqs)
	}
	if got := f.series("d", "temperature").Suppressed.Load(); got != 3 {
		t.Fatalf("suppressed %v", got)
	}
}

// TestPollerTimeoutAndSkip: a hung source is cut off at its timeout, counted
// as a failure, and its next turns are skipped while it hangs, without
// delaying another sensor.
func TestPollerTimeoutAndSkip(t *testing.T) {
	f := newPollerFixture(t, `sensors:
  - {name: hung, type: test-scripted, interval: 20ms, timeout: 200ms}
  - {name: fine, type: test-scripted, interval: 20ms}
`)
	scriptedMu.Lock()
	fine := scriptedSources["fine"]
	scriptedMu.Unlock()
	fine.set(nil, sensors.Reading{Quantity: "temperature", Value: 20})
	f.src.mu.Lock()
	f.src.block = make(chan struct{}) // never released
	f.src.mu.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.p.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for f.stats("hung").ReadErrors.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no timeouts counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	hungReads := f.src.reads
	fineReads := f.stats("fine").Reads.Load()
	// Two timeouts of 200ms took at least 400ms: 'fine' read about every
	// 20ms meanwhile; 'hung' was started only once per timeout.
	if fineReads < 10 {
		t.Errorf("the healthy sensor read only %v times", fineReads)
	}
	if hungReads > 4 {
		t.Errorf("the hung sensor was started %d times: turns not skipped", hungReads)
	}
}

func TestPollerContinuesSeqFromSpool(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("gateway: {id: gw}\nmetrics: {listen: '127.0.0.1:0'}\nsensors: [{name: c, type: test-scripted}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	q := spool.NewMemory(10, 1<<20, 1)
	q.Append(&spool.Record{Topic: "x", SeqKey: "c/temperature", Seq: 41})
	q.Ack(1)
	p, err := NewPoller(cfg, q, metrics.New("t"), slog.New(slog.DiscardHandler), metrics.NewLiveness(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	scriptedMu.Lock()
	src := scriptedSources["c"]
	scriptedMu.Unlock()
	src.set(nil, sensors.Reading{Quantity: "temperature", Value: 1})
	p.read(context.Background(), p.sensors[0])
	recs := q.Peek(0, make([]spool.Record, 0, 4))
	if len(recs) != 1 || !strings.Contains(string(recs[0].Payload), `"seq":42`) {
		t.Fatalf("%+v", recs)
	}
}

// TestPollerBoundsQuantities: a source that invents a new quantity at every
// read cannot grow the sensor's series without bound.
func TestPollerBoundsQuantities(t *testing.T) {
	f := newPollerFixture(t, "sensors: [{name: q, type: test-scripted}]\n")
	s := f.p.sensors[0]
	for i := 0; i < 40; i++ {
		f.src.set(nil, sensors.Reading{Quantity: fmt.Sprintf("q%d", i), Value: 1})
		f.p.read(context.Background(), s)
	}
	if n := len(s.series); n != maxQuantities+1 {
		t.Fatalf("%d series", n)
	}
	if got := f.series("q", "invalid").Rejected.Load(); got != 40-maxQuantities {
		t.Fatalf("rejected %d", got)
	}
}
