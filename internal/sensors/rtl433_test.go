package sensors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
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

// What rtl_433 22.11 prints for the two recordings in testdata/rtl433.
const (
	nexusLine = `{"time" : "@0.091892s", "model" : "Nexus-TH", "id" : 181, "channel" : 2, "battery_ok" : 0, "temperature_C" : 19.000, "humidity" : 71}`
	wh2Line   = `{"time" : "@0.126396s", "model" : "Fineoffset-WH2", "id" : 209, "temperature_C" : 24.600, "humidity" : 33, "mic" : "CRC"}`
)

func TestParseRTL433(t *testing.T) {
	tests := []struct {
		line               string
		model, id, channel string
		want               []Reading
		err                error
	}{
		{nexusLine, "Nexus-TH", "181", "2", []Reading{{Quantity: Temperature, Value: 19}, {Quantity: Humidity, Value: 71}, {Quantity: "battery_ok", Value: 0}}, nil},
		{wh2Line, "Fineoffset-WH2", "209", "", []Reading{{Quantity: Temperature, Value: 24.6}, {Quantity: Humidity, Value: 33}}, nil},
		// Acurite: channel as a letter, Fahrenheit only, battery fine.
		{`{"model":"Acurite-Tower","id":3456,"channel":"A","battery_ok":1,"temperature_F":70.7,"humidity":48}`,
			"Acurite-Tower", "3456", "a", []Reading{{Quantity: Temperature, Value: 21.5}, {Quantity: Humidity, Value: 48}, {Quantity: "battery_ok", Value: 1}}, nil},
		// Both units: the Celsius one is taken.
		{`{"model":"X","temperature_C":-3.5,"temperature_F":25.7}`, "X", "", "", []Reading{{Quantity: Temperature, Value: -3.5}}, nil},
		{`{"model":"Bresser-6in1","id":"0x1a2b","pressure_kPa":101.325,"battery_ok":0.3}`,
			"Bresser-6in1", "6699", "", []Reading{{Quantity: Pressure, Value: 1013.25}, {Quantity: "battery_ok", Value: 0}}, nil},
		{`{"model":"WS","pressure_hPa":1002.5,"pressure_kPa":99}`, "WS", "", "", []Reading{{Quantity: Pressure, Value: 1002.5}}, nil},
		// A message without any field gatewayd publishes is still a device.
		{`{"model":"Honeywell-Security","id":"0af3b2","channel":8,"event":128}`, "Honeywell-Security", "0af3b2", "8", nil, nil},
		// Fields that are not numbers, or not finite, are left out.
		{`{"model":"Y","humidity":"LL","temperature_C":1e999,"battery_ok":null}`, "Y", "", "", nil, nil},
		{`  {"model":"Z","humidity":50}  ` + "\r\n", "Z", "", "", []Reading{{Quantity: Humidity, Value: 50}}, nil},
		{`{"time":"2024-01-01 00:00:00","temperature_C":20}`, "", "", "", nil, errRTLNoModel},
		{`{"model":17,"temperature_C":20}`, "", "", "", nil, errRTLNoModel},
		{`garbage`, "", "", "", nil, errRTLNotJSON},
		{`{"model":"X","temperature_C":`, "", "", "", nil, errRTLNotJSON},
		{`[{"model":"X"}]`, "", "", "", nil, errRTLNotJSON},
		{`{"model":"X"} {"model":"Y"}`, "", "", "", nil, errRTLNotJSON},
		{`{"model":"` + strings.Repeat("x", rtlMaxLine) + `"}`, "", "", "", nil, errRTLTooLong},
	}
	for _, tt := range tests {
		m, err := parseRTL433([]byte(tt.line))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%.60s: err = %v, want %v", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil || m.model != tt.model || m.id != tt.id || m.channel != tt.channel {
			t.Errorf("%.60s: %+v, %v; want model %q id %q channel %q", tt.line, m, err, tt.model, tt.id, tt.channel)
			continue
		}
		if readingsString(m.readings) != readingsString(tt.want) {
			t.Errorf("%.60s: readings %s, want %s", tt.line, readingsString(m.readings), readingsString(tt.want))
		}
	}
}

func FuzzParseRTL433(f *testing.F) {
	for _, s := range []string{nexusLine, wh2Line, `{"model":"A","channel":"B","id":"0x10","temperature_F":1e308,"pressure_kPa":-1e308}`, `{`, `{"model":"\u0000"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := parseRTL433(line)
		if err != nil {
			return
		}
		if m.model == "" {
			t.Fatal("a message without a model")
		}
		seen := map[string]bool{}
		for _, r := range m.readings {
			if math.IsNaN(r.Value) || math.IsInf(r.Value, 0) || !ValidQuantity(r.Quantity) || seen[r.Quantity] {
				t.Fatalf("%q gave %v", line, m.readings)
			}
			seen[r.Quantity] = true
		}
	})
}

func TestRTLKey(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"181", "181"}, {`"181"`, "181"}, {"0xb5", "181"}, {`"0xB5"`, "181"}, {"A", "a"}, {`"A"`, "a"},
		{"2.0", "2"}, {`"0af3b2"`, "0af3b2"}, {" 7 ", "7"},
	} {
		if got := rtlKey([]byte(tt.in)); got != tt.want {
			t.Errorf("rtlKey(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// readingsString shows readings as "temperature=19 humidity=71".
func readingsString(rs []Reading) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s=%v", r.Quantity, r.Value))
	}
	return strings.Join(parts, " ")
}

// fakeRTL433 writes a shell script that plays rtl_433: script is its body.
func fakeRTL433(t *testing.T, script string) []string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "rtl_433")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{p, "-F", "json"}
}

// testLog collects log lines for assertions.
type testLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newTestLog() (*testLog, *slog.Logger) {
	l := &testLog{}
	return l, slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func nextEvent(t *testing.T, s *rtlSubscriber) rtlEvent {
	t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no transmission within 10s")
	}
	return rtlEvent{}
}

// A fake rtl_433 that prints recorded lines among garbage, a huge line, a
// device no sensor names (twice) and, last, half a line, then exits: the
// sensors get their transmissions with the time they were read, the bad
// lines are skipped and counted, the unknown device is logged once, and
// Run reports the exit.
func TestRTLReceiverLines(t *testing.T) {
	huge := strings.Repeat("x", 3*rtlMaxLine)
	cmd := fakeRTL433(t, fmt.Sprintf(`echo 'rtl_433 version 22.11 (fake)' >&2
echo '%s'
echo 'not json at all'
echo '{"model":"Acurite-Tower","id":3456,"channel":"A","temperature_F":70.7}'
echo '%s'
echo '{"model":"Acurite-Tower","id":3456,"channel":"A","humidity":48}'
echo '{"model":"LaCrosse-TX141THBv2","id":77,"channel":0,"temperature_C":5.5}'
echo '{"model":"LaCrosse-TX141THBv2","id":77,"channel":0,"temperature_C":5.6}'
echo '{"model":"Acurite-Tower","id":3456,"channel":"B","temperature_C":30}'
echo '%s'
printf '{"model":"Nexus-TH","id":181,"chan'
exit 3
`, nexusLine, huge, wh2Line))
	logs, log := newTestLog()
	r := newRTLReceiver(cmd, log)
	nexus := r.subscribe("Nexus-TH", "181", "2")
	nexusOther := r.subscribe("nexus-th", "181", "1") // another channel: nothing
	acurite := r.subscribe("Acurite-Tower", rtlKeyString("3456"), rtlKeyString("A"))
	anyWH2 := r.subscribe("Fineoffset-WH2", "", "")

	before := time.Now()
	err := r.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "exit status 3 (stderr: rtl_433 version 22.11 (fake))") {
		t.Fatalf("Run = %v, want the exit status and the stderr", err)
	}
	ev := nextEvent(t, nexus)
	if readingsString(ev.readings) != "temperature=19 humidity=71 battery_ok=0" || ev.at.Before(before) || time.Since(ev.at) > 10*time.Second {
		t.Errorf("nexus: %+v", ev)
	}
	// Temperature and humidity in separate messages: two transmissions.
	if ev := nextEvent(t, acurite); readingsString(ev.readings) != "temperature=21.5" {
		t.Errorf("acurite 1: %+v", ev)
	}
	if ev := nextEvent(t, acurite); readingsString(ev.readings) != "humidity=48" {
		t.Errorf("acurite 2: %+v", ev)
	}
	if ev := nextEvent(t, anyWH2); readingsString(ev.readings) != "temperature=24.6 humidity=33" {
		t.Errorf("wh2: %+v", ev)
	}
	for _, s := range []*rtlSubscriber{nexus, nexusOther, acurite, anyWH2} {
		if len(s.events) != 0 {
			t.Errorf("%s/%s/%s: %d more transmissions", s.model, s.id, s.channel, len(s.events))
		}
	}
	// Skipped: the garbage, the huge line, the half line.
	if n := r.skipped.Load(); n != 3 {
		t.Errorf("skipped %d lines, want 3", n)
	}
	out := logs.String()
	if n := strings.Count(out, `msg="rtl_433 heard a device that no sensor names" model=LaCrosse-TX141THBv2 id=77 channel=0 quantities=temperature`); n != 1 {
		t.Errorf("the unknown LaCrosse was logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, `model=Acurite-Tower id=3456 channel=b`) {
		t.Errorf("the Acurite on channel B was not logged:\n%s", out)
	}
	if !strings.Contains(out, `level=DEBUG msg=rtl_433 stderr="\"rtl_433 version 22.11 (fake)\""`) {
		t.Errorf("stderr not in the debug log:\n%s", out)
	}
	if !strings.Contains(out, "the line was cut off") {
		t.Errorf("the half line was not logged:\n%s", out)
	}
}

// pidAlive reports whether pid is a live process (a zombie is not).
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func readPids(t *testing.T, path string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		f := strings.Fields(string(b))
		if len(f) >= n {
			var pids []int
			for _, s := range f[:n] {
				p, err := strconv.Atoi(s)
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, p)
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %d pids within 10s", path, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitPidsGone(t *testing.T, pids []int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, p := range pids {
		for pidAlive(p) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive after %v", p, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// A child that hangs (and started one of its own) is ended with its whole
// process group when ctx ends, and one that ignores SIGTERM gets SIGKILL
// after the grace period.
func TestRTLReceiverStop(t *testing.T) {
	const grace = 300 * time.Millisecond
	for _, tt := range []struct{ name, trap string }{{"hangs", ""}, {"ignores SIGTERM", "trap '' TERM"}} {
		t.Run(tt.name, func(t *testing.T) {
			pids := filepath.Join(t.TempDir(), "pids")
			cmd := fakeRTL433(t, fmt.Sprintf(`%s
sleep 1000 &
echo $$ $! > %s
echo '%s'
while :; do sleep 1; done
`, tt.trap, pids, nexusLine))
			_, log := newTestLog()
			r := newRTLReceiver(cmd, log)
			r.grace = grace
			s := r.subscribe("Nexus-TH", "", "")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			nextEvent(t, s)
			p := readPids(t, pids, 2)
			start := time.Now()
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run after cancel = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
			if d := time.Since(start); d > grace+2*time.Second {
				t.Errorf("stopping took %v", d)
			}
			waitPidsGone(t, p, 5*time.Second)
		})
	}
}

// A child that closes its output but keeps running is ended too: Run
// returns, and nothing of it is left.
func TestRTLReceiverClosedOutput(t *testing.T) {
	const grace = 300 * time.Millisecond
	pids := filepath.Join(t.TempDir(), "pids")
	cmd := fakeRTL433(t, fmt.Sprintf("echo $$ > %s\nexec >&- 2>&-\nwhile :; do sleep 1; done\n", pids))
	_, log := newTestLog()
	r := newRTLReceiver(cmd, log)
	r.grace = grace
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	p := readPids(t, pids, 1)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run = nil, want why the child is gone")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	waitPidsGone(t, p, 5*time.Second)
}

// The real rtl_433 (Debian's rtl-433) replaying recordings of real sensors:
// the sensor that names the device gets its readings. CI sets
// GATEWAYD_REQUIRE_RTL433=1 so that a missing rtl_433 fails there.
func TestRTLReceiverReplay(t *testing.T) {
	bin, err := exec.LookPath("rtl_433")
	if err != nil {
		if os.Getenv("GATEWAYD_REQUIRE_RTL433") != "" {
			t.Fatal("rtl_433 not found (apt-get install rtl-433)")
		}
		t.Skip("rtl_433 not found (apt-get install rtl-433)")
	}
	for _, tt := range []struct {
		file, model, id, channel string
		want                     string
	}{
		{"nexus_th.cu8", "Nexus-TH", "181", "2", "temperature=19 humidity=71 battery_ok=0"},
		{"fineoffset_wh2.cu8", "Fineoffset-WH2", "209", "", "temperature=24.6 humidity=33"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			file, err := filepath.Abs(filepath.Join("testdata/rtl433", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			_, log := newTestLog()
			r := newRTLReceiver([]string{bin, "-r", file, "-F", "json"}, log)
			s := r.subscribe(tt.model, tt.id, tt.channel)
			err = r.Run(context.Background()) // the replay ends: rtl_433 exits 0
			if err == nil || !strings.Contains(err.Error(), "status 0") {
				t.Fatalf("Run = %v", err)
			}
			if ev := nextEvent(t, s); readingsString(ev.readings) != tt.want {
				t.Errorf("readings %s, want %s", readingsString(ev.readings), tt.want)
			}
			if n := r.skipped.Load(); n != 0 {
				t.Errorf("%d lines skipped", n)
			}
		})
	}
}

// The child never outlives gatewayd, even when gatewayd is killed with
// SIGKILL (no chance to clean up): the test runs itself as a parent that
// starts a receiver, kills that parent, and sees the child die
// (Pdeathsig).
func TestRTLChildDiesWithParent(t *testing.T) {
	if pids := os.Getenv("GATEWAYD_TEST_RTL_PARENT"); pids != "" {
		cmd := fakeRTL433(t, fmt.Sprintf("echo $$ > %s\nwhile :; do sleep 1; done\n", pids))
		_, log := newTestLog()
		newRTLReceiver(cmd, log).Run(context.Background()) // until killed
		return
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	pids := filepath.Join(t.TempDir(), "pids")
	parent := exec.Command(os.Args[0], "-test.run=^TestRTLChildDiesWithParent$")
	parent.Env = append(os.Environ(), "GATEWAYD_TEST_RTL_PARENT="+pids)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	child := readPids(t, pids, 1)
	if !pidAlive(child[0]) {
		t.Fatal("the child is not running")
	}
	parent.Process.Signal(syscall.SIGKILL)
	parent.Wait()
	waitPidsGone(t, child, 5*time.Second)
}
