package sensors

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRTL433Validate(t *testing.T) {
	tests := []struct {
		cfg RTL433Config
		key string
	}{
		{RTL433Config{Model: "Acurite-Tower", ID: "3456", Channel: "A"}, ""},
		{RTL433Config{Model: "Nexus-TH", ID: "0xb5", Command: []string{"/usr/local/bin/rtl_433", "-f", "868M", "-F", "json"}}, ""},
		{RTL433Config{Model: "Fineoffset-WH2"}, ""},
		{RTL433Config{}, "model"},
		{RTL433Config{Model: "  "}, "model"},
		{RTL433Config{Model: "a\nb"}, "model"},
		{RTL433Config{Model: "X", ID: "1\x00"}, "id"},
		{RTL433Config{Model: "X", Channel: strings.Repeat("A", 17)}, "channel"},
		{RTL433Config{Model: "X", Command: []string{}}, "command"},
		{RTL433Config{Model: "X", Command: []string{""}}, "command"},
		{RTL433Config{Model: "X", Command: []string{"bin/rtl_433"}}, "command"},
		{RTL433Config{Model: "X", Command: []string{"rtl_433", "-F\x00"}}, "command"},
	}
	for _, tt := range tests {
		checkValidate(t, &tt.cfg, tt.key)
	}
	if err := (&RTL433Config{Model: "X", Command: []string{"no-such-rtl_433-here"}}).Probe(); err == nil {
		t.Error("Probe of a missing program: no error")
	}
	var _ PushConfig = &RTL433Config{}
}

// newRTL433 builds an rtl433 sensor as the daemon does, sharing rs.
func newRTL433(t *testing.T, cfg *RTL433Config, rs *Receivers) *RTL433 {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, log := newTestLog()
	src, err := cfg.New(Env{Name: "test", Log: log, Receivers: rs})
	if err != nil {
		t.Fatal(err)
	}
	p, ok := src.(Pusher)
	if !ok {
		t.Fatalf("%T is not a Pusher", src)
	}
	return p.(*RTL433)
}

// emitted collects what a Pusher emits.
type emitted struct {
	mu sync.Mutex
	rs []Reading
}

func (e *emitted) emit(rs []Reading) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rs = append(e.rs, rs...)
}

func (e *emitted) get() []Reading {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Reading(nil), e.rs...)
}

// runPusher runs p until the test ends.
func runPusher(t *testing.T, p Pusher) *emitted {
	t.Helper()
	e := &emitted{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, e.emit) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return e
}

// Two sensors with one command share one rtl_433; each gets its device's
// readings, stamped with the time gatewayd read them. When the child
// exits it is started again after the registry's backoff, not at once.
func TestRTL433SharedChildRestarted(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	cmd := fakeRTL433(t, `date +%s.%N >> `+starts+`
echo '`+nexusLine+`'
echo '`+wh2Line+`'
sleep 0.2
exit 1
`)
	_, log := newTestLog()
	rs := NewReceivers(log)
	defer rs.Close()
	before := time.Now()
	nexus := runPusher(t, newRTL433(t, &RTL433Config{Model: "Nexus-TH", ID: "181", Channel: "2", Command: cmd}, rs))
	wh2 := runPusher(t, newRTL433(t, &RTL433Config{Model: "fineoffset-wh2", ID: "0xd1", Command: cmd}, rs))

	eventually(t, "both sensors heard twice", func() bool { return len(nexus.get()) >= 6 && len(wh2.get()) >= 4 })
	if got := readingsString(nexus.get()[:3]); got != "temperature=19 humidity=71 battery_ok=0" {
		t.Errorf("nexus: %s", got)
	}
	if got := readingsString(wh2.get()[:2]); got != "temperature=24.6 humidity=33" {
		t.Errorf("wh2: %s", got)
	}
	for _, r := range append(nexus.get(), wh2.get()...) {
		if r.Time.Before(before) || time.Since(r.Time) > time.Minute {
			t.Fatalf("reading time %v, want when the line was read", r.Time)
		}
	}
	b, _ := os.ReadFile(starts)
	lines := strings.Fields(string(b))
	if len(lines) < 2 {
		t.Fatalf("started %d times", len(lines))
	}
	first, err1 := strconv.ParseFloat(lines[0], 64)
	second, err2 := strconv.ParseFloat(lines[1], 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("start times %q: %v %v", lines, err1, err2)
	}
	// The child lived 0.2 s; the next start came after the 1 s backoff.
	if gap := second - first; gap < 1.1 {
		t.Errorf("started again %.2fs after the last start: no backoff", gap)
	}
	if got := rs.Running(); len(got) != 1 {
		t.Errorf("receivers running: %v, want one shared", got)
	}
}

// The real rtl_433 replaying a recording, through the sensor: the daemon's
// path from the child to emit.
func TestRTL433Replay(t *testing.T) {
	bin, err := exec.LookPath("rtl_433")
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_RTL433") != "" {
			t.Fatal("rtl_433 not found (apt-get install rtl-433)")
		}
		t.Skip("rtl_433 not found (apt-get install rtl-433)")
	}
	file, err := filepath.Abs("testdata/rtl433/nexus_th.cu8")
	if err != nil {
		t.Fatal(err)
	}
	e := runPusher(t, newRTL433(t, &RTL433Config{Model: "Nexus-TH", ID: "181", Channel: "2", Command: []string{bin, "-r", file, "-F", "json"}}, nil))
	eventually(t, "the recorded transmission", func() bool { return len(e.get()) >= 3 })
	if got := readingsString(e.get()[:3]); got != "temperature=19 humidity=71 battery_ok=0" {
		t.Errorf("readings %s", got)
	}
}
