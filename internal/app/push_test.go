package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// A real push source type, registered from this test file: sensors of type
// test-push share one "radio" receiver (sensors.Join), which hears what the
// test transmits and hands each transmission to the sensor of its device.

type transmission struct {
	device   string
	readings []sensors.Reading
}

// air carries the test's transmissions to the radio that runs.
var air = make(chan transmission, 100)

func transmit(device string, at time.Time, qv ...any) {
	var rs []sensors.Reading
	for i := 0; i+1 < len(qv); i += 2 {
		rs = append(rs, sensors.Reading{Quantity: qv[i].(string), Value: qv[i+1].(float64), Time: at})
	}
	air <- transmission{device, rs}
}

type radio struct {
	log     *slog.Logger
	mu      sync.Mutex
	subs    map[string]chan []sensors.Reading
	unknown map[string]bool
}

// listening is the devices the running radio has subscribers for, for the
// test to wait on.
var listening sync.Map

func (r *radio) subscribe(device string) chan []sensors.Reading {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan []sensors.Reading, 10)
	r.subs[device] = ch
	listening.Store(device, true)
	return ch
}

func (r *radio) unsubscribe(device string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, device)
	listening.Delete(device)
}

func listeningTo(devices ...string) func() bool {
	return func() bool {
		for _, d := range devices {
			if _, ok := listening.Load(d); !ok {
				return false
			}
		}
		return true
	}
}

// radioStarts counts the runs of the radio: a reload must not restart it.
var radioStarts atomic.Int32

func (r *radio) Run(ctx context.Context) error {
	radioStarts.Add(1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case tx := <-air:
			r.mu.Lock()
			ch, ok := r.subs[tx.device]
			if !ok && !r.unknown[tx.device] {
				r.unknown[tx.device] = true
				r.log.Info("device heard that no sensor names", "device", tx.device)
			}
			r.mu.Unlock()
			if ok {
				ch <- tx.readings
			}
		}
	}
}

type pushConfig struct {
	Device string `yaml:"device"`
}

func (c *pushConfig) Validate() error {
	if c.Device == "" {
		return sensors.Errorf("device", "is required")
	}
	return nil
}
func (c *pushConfig) Pushes() {}
func (c *pushConfig) New(env sensors.Env) (sensors.Source, error) {
	return &pushSource{device: c.Device, env: env}, nil
}

type pushSource struct {
	sensors.PushOnly
	device string
	env    sensors.Env
}

func (s *pushSource) Run(ctx context.Context, emit func([]sensors.Reading)) error {
	r, leave, err := sensors.Join(s.env.Receivers, "test radio", func() *radio {
		return &radio{log: s.env.Log, subs: map[string]chan []sensors.Reading{}, unknown: map[string]bool{}}
	})
	if err != nil {
		return err
	}
	defer leave()
	ch := r.subscribe(s.device)
	defer r.unsubscribe(s.device)
	for {
		select {
		case <-ctx.Done():
			return nil
		case rs := <-ch:
			emit(rs)
		}
	}
}

func init() { sensors.Register("test-push", func() sensors.Config { return &pushConfig{} }) }

// TestPushSensors: readings pushed arrive with the device's time, the repeats
// of one transmission within 2 s are one reading, interval is the least time
// between two published readings, stale_after turns sensor_up to 0, and a
// device that no sensor names is logged once.
func TestPushSensors(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	sub := subscribe(t, b.URL(), "push-sub", "gatewayd/gw/+/+")
	d := startDaemon(t, baseYAML(b.URL())+`sensors:
  - {name: garden, type: test-push, device: A}
  - {name: shed, type: test-push, device: B, interval: 2s, stale_after: 1s}
`)
	testbroker.Eventually(t, 10*time.Second, "connected", d.Session.Connected)
	testbroker.Eventually(t, 10*time.Second, "sensors subscribed to the radio", listeningTo("A", "B"))
	got := func(sensor string) []reading {
		var rs []reading
		for k, v := range series(t, sub.messages()) {
			if strings.HasPrefix(k, sensor+"/") {
				rs = append(rs, v...)
			}
		}
		return rs
	}

	// garden: one transmission sent three times, then a new value within
	// the repeat window: two readings, with the device's time.
	t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond).UTC()
	for i := 0; i < 3; i++ {
		transmit("A", t0.Add(time.Duration(i)*300*time.Millisecond), "temperature", 12.5)
	}
	transmit("A", t0.Add(time.Second), "temperature", 12.75)
	testbroker.Eventually(t, 10*time.Second, "two garden readings", func() bool { return len(got("garden")) >= 2 })

	// shed: interval 2s; device times 0, 0.5 s, 2.1 s: the second is too soon.
	transmit("B", t0, "humidity", 50.0)
	transmit("B", t0.Add(500*time.Millisecond), "humidity", 51.0)
	transmit("B", t0.Add(2100*time.Millisecond), "humidity", 52.0)
	transmit("C", t0, "temperature", 1.0) // nobody's
	transmit("C", t0, "temperature", 1.0)
	testbroker.Eventually(t, 10*time.Second, "two shed readings", func() bool { return len(got("shed")) >= 2 })
	transmit("A", t0.Add(3*time.Second), "temperature", 13.0) // a marker: everything before it was taken
	testbroker.Eventually(t, 10*time.Second, "the marker", func() bool { return len(got("garden")) >= 3 })

	garden, shed := got("garden"), got("shed")
	var gv, sv []string
	for _, r := range garden {
		gv = append(gv, fmt.Sprintf("%v@%s#%d", r.Value, r.Time, r.Seq))
	}
	for _, r := range shed {
		sv = append(sv, fmt.Sprintf("%v#%d", r.Value, r.Seq))
	}
	ts := func(d time.Duration) string { return t0.Add(d).Format("2006-01-02T15:04:05.000Z") }
	if want := []string{"12.5@" + ts(0) + "#1", "12.75@" + ts(time.Second) + "#2", "13@" + ts(3*time.Second) + "#3"}; strings.Join(gv, " ") != strings.Join(want, " ") {
		t.Errorf("garden published %v, want %v", gv, want)
	}
	if want := "50#1 52#2"; strings.Join(sv, " ") != want {
		t.Errorf("shed published %v, want %v", sv, want)
	}
	if n := strings.Count(d.logs.String(), "device heard that no sensor names"); n != 1 {
		t.Errorf("the unknown device was logged %d times", n)
	}

	// shed is stale a second after it was last heard; garden (15m) is not.
	testbroker.Eventually(t, 10*time.Second, "shed down", func() bool {
		_, body := scrape(t, d, "/metrics")
		return strings.Contains(body, `gatewayd_sensor_up{sensor="shed"} 0`) && strings.Contains(body, `gatewayd_sensor_up{sensor="garden"} 1`)
	})
	_, body := scrape(t, d, "/metrics")
	for _, want := range []string{`gatewayd_sensor_reads_total{sensor="shed"} 3`, `gatewayd_sensor_values_suppressed_total{quantity="temperature",sensor="garden"} 2`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grep(body, "gatewayd_sensor_"))
		}
	}
	testbroker.Eventually(t, 10*time.Second, "logged as not heard", func() bool {
		return strings.Contains(d.logs.String(), `"msg":"sensor not heard within stale_after","component":"sensors","sensor":"shed"`)
	})
	transmit("B", time.Now(), "humidity", 60.0)
	testbroker.Eventually(t, 10*time.Second, "shed up again", func() bool {
		_, body := scrape(t, d, "/metrics")
		return strings.Contains(body, `gatewayd_sensor_up{sensor="shed"} 1`)
	})
}
