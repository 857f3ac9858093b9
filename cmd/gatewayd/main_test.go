package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run the real binary, as users and systemd do.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatewayd-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "gatewayd")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building gatewayd: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateway.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// gatewayd runs the binary to completion and returns stdout, stderr and
// the exit code.
func gatewayd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := gatewayd(t, nil, "-version")
	if code != 0 || !regexp.MustCompile(`^gatewayd \S+ \(commit \S+, go1\.\d+`).MatchString(out) {
		t.Fatalf("exit %d, %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-nosuchflag"}, {"extra-arg"}, {"-check", "-once"}} {
		_, stderr, code := gatewayd(t, nil, args...)
		if code != 2 || stderr == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

func TestCheck(t *testing.T) {
	out, stderr, code := gatewayd(t, nil, "-check", "-config", "../../configs/gateway.yaml")
	if code != 0 || !strings.Contains(out, "../../configs/gateway.yaml: OK") || !strings.Contains(out, "living-room (simulated, every 5s") {
		t.Fatalf("shipped config: exit %d\n%s%s", code, out, stderr)
	}
	bad := writeConfig(t, "broker:\n  keepalive: 10s\nsensors:\n  - name: a\n    interval: -1s\n    type: simulated\n")
	_, stderr, code = gatewayd(t, nil, "-check", "-config", bad)
	if code != 2 || !strings.Contains(stderr, bad+":5: sensors[0].interval: must be at least 10ms") {
		t.Fatalf("bad config: exit %d, %q", code, stderr)
	}
	// A sensor without a type is refused, not taken for a simulated one.
	untyped := writeConfig(t, "sensors:\n  - name: a\n    interval: 1s\n")
	_, stderr, code = gatewayd(t, nil, "-check", "-config", untyped)
	if code != 2 || !strings.Contains(stderr, untyped+":2: sensors[0].type: is required (one of ") {
		t.Fatalf("sensor without type: exit %d, %q", code, stderr)
	}
	_, stderr, code = gatewayd(t, nil, "-check", "-config", "/nonexistent/gateway.yaml")
	if code != 2 || !strings.Contains(stderr, "reading config file /nonexistent/gateway.yaml") {
		t.Fatalf("missing config: exit %d, %q", code, stderr)
	}
	env := writeConfig(t, "gateway:\n  id: ${GW_TEST_ID}\n")
	out, _, code = gatewayd(t, []string{"GW_TEST_ID=from-env"}, "-check", "-config", env)
	if code != 0 || !strings.Contains(out, "gateway id:       from-env") {
		t.Fatalf("env: exit %d, %q", code, out)
	}
}

func TestOnce(t *testing.T) {
	cfg := writeConfig(t, `gateway: {id: gw}
sensors:
  - {name: kitchen, type: simulated, seed: 1}
  - {name: cellar, type: simulated, seed: 2, offset: {temperature: -10}}
`)
	out, stderr, code := gatewayd(t, nil, "-once", "-config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{"gatewayd/gw/kitchen/temperature", "gatewayd/gw/kitchen/humidity", "gatewayd/gw/cellar/temperature", "gatewayd/gw/cellar/humidity"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines:\n%s", len(lines), out)
	}
	for i, line := range lines {
		topic, payload, _ := strings.Cut(line, " ")
		var r struct {
			Seq   int     `json:"seq"`
			Value float64 `json:"value"`
		}
		if topic != want[i] || json.Unmarshal([]byte(payload), &r) != nil || r.Seq != 1 {
			t.Errorf("line %d: %q", i, line)
		}
		if topic == "gatewayd/gw/cellar/temperature" && r.Value > 20 {
			t.Errorf("offset not applied: %v", r.Value)
		}
	}
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunAndSIGTERM runs the daemon on its embedded broker, scrapes it, and
// stops it with SIGTERM: exit 0 within 10 s.
func TestRunAndSIGTERM(t *testing.T) {
	metricsAddr := freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`gateway: {id: gw}
embedded_broker: {enabled: true, listen: "127.0.0.1:0"}
sensors: [{name: room, type: simulated, interval: 50ms}]
metrics: {listen: %q}
`, metricsAddr))
	cmd, logs := startGatewayd(t, nil, "-config", cfg)
	waitLog(t, logs, "msg=connected", 10*time.Second)

	deadline := time.Now().Add(10 * time.Second)
	for {
		body := get(t, "http://"+metricsAddr+"/metrics")
		if strings.Contains(body, "gatewayd_mqtt_connected 1") && regexp.MustCompile(`gatewayd_mqtt_messages_published_total [1-9]`).MatchString(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no readings published:\n%s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	waitLog(t, logs, "msg=disconnected", 10*time.Second)
	err := cmd.Wait()
	if err != nil || time.Since(start) > 10*time.Second {
		t.Fatalf("after SIGTERM: %v after %s", err, time.Since(start))
	}
}

// startGatewayd starts gatewayd with args, and env added to this process's
// environment; it returns the command and the lines of its stderr, a
// channel closed when it exits. The test's end kills it.
func startGatewayd(t *testing.T, env []string, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	logs := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs <- sc.Text()
		}
		close(logs)
	}()
	return cmd, logs
}

func waitLog(t *testing.T, logs <-chan string, want string, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-logs:
			if !ok {
				t.Fatalf("gatewayd exited before logging %q", want)
			}
			if strings.Contains(line, want) {
				return
			}
		case <-timer.C:
			t.Fatalf("no %q in the log within %s", want, timeout)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPortsInUse: a taken port is a clear error naming the key to change.
func TestPortsInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()

	cfg := writeConfig(t, fmt.Sprintf("embedded_broker: {enabled: true, listen: %q}\nmetrics: {listen: %q}\n", taken, freePort(t)))
	_, stderr, code := gatewayd(t, nil, "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "embedded_broker.listen: "+taken+" is already in use") || !strings.Contains(stderr, "embedded_broker.enabled: false") {
		t.Errorf("embedded broker port taken: exit %d, %q", code, stderr)
	}
	cfg = writeConfig(t, fmt.Sprintf("broker: {urls: [\"tcp://%s\"]}\nmetrics: {listen: %q}\n", freePort(t), taken))
	_, stderr, code = gatewayd(t, nil, "-config", cfg)
	if code != 1 || !strings.Contains(stderr, "metrics.listen: listen tcp "+taken) {
		t.Errorf("metrics port taken: exit %d, %q", code, stderr)
	}
}
