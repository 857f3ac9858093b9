package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadSIGHUP reloads the real binary with SIGHUP, as systemctl reload
// does: a broken file changes nothing and is logged error by error with its
// file, line and key; a good one applies; systemd hears RELOADING=1 (with
// MONOTONIC_USEC) and READY=1 around each.
func TestReloadSIGHUP(t *testing.T) {
	notify := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	notes := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				return
			}
			notes <- string(buf[:n])
		}
	}()

	metricsAddr := freePort(t)
	good := fmt.Sprintf(`gateway: {id: gw}
embedded_broker: {enabled: true, listen: "127.0.0.1:0"}
metrics: {listen: %q}
sensors:
  - {name: room, type: simulated, interval: 50ms}
`, metricsAddr)
	cfg := writeConfig(t, good)
	cmd, logs := startGatewayd(t, []string{"NOTIFY_SOCKET=" + notify}, "-config", cfg)
	waitNote(t, notes, "READY=1")
	waitLog(t, logs, "msg=connected", 10*time.Second)
	metrics := func() string { return get(t, "http://"+metricsAddr+"/metrics") }
	if m := metrics(); !strings.Contains(m, "gatewayd_config_last_reload_successful 1") || !strings.Contains(m, "gatewayd_config_last_reload_success_timestamp_seconds 1.") {
		t.Fatalf("reload metrics at start:\n%s", m)
	}

	// Broken: two errors, both logged; nothing changes.
	if err := os.WriteFile(cfg, []byte(good+"  - {name: bad, type: simulated, interval: -1s}\n  - {name: Bad Name, type: simulated}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitNote(t, notes, "RELOADING=1\nMONOTONIC_USEC=")
	waitLog(t, logs, fmt.Sprintf(`level=ERROR msg="config not reloaded; keeping the running one" file=%s line=6 key=sensors[1].interval err="must be at least 10ms, not -1s"`, cfg), 10*time.Second)
	waitLog(t, logs, fmt.Sprintf(`level=ERROR msg="config not reloaded; keeping the running one" file=%s line=7 key=sensors[2].name err="\"Bad Name\" must be 1..64`, cfg), 10*time.Second)
	waitNote(t, notes, "READY=1")
	if m := metrics(); !strings.Contains(m, "gatewayd_config_last_reload_successful 0") || strings.Contains(m, `sensor="bad"`) {
		t.Fatalf("after a broken reload:\n%s", m)
	}

	// Good: a sensor added.
	if err := os.WriteFile(cfg, []byte(good+"  - {name: cellar, type: simulated, interval: 50ms}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitNote(t, notes, "RELOADING=1")
	waitLog(t, logs, `msg="config reloaded"`, 10*time.Second)
	waitNote(t, notes, "READY=1")
	deadline := time.Now().Add(10 * time.Second)
	for m := metrics(); !strings.Contains(m, `gatewayd_sensor_reads_total{sensor="cellar"}`) || !strings.Contains(m, "gatewayd_config_last_reload_successful 1"); m = metrics() {
		if time.Now().After(deadline) {
			t.Fatalf("after a good reload:\n%s", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

func waitNote(t *testing.T, notes <-chan string, prefix string) {
	t.Helper()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	for {
		select {
		case n := <-notes:
			if strings.HasPrefix(n, prefix) {
				return
			}
		case <-timer.C:
			t.Fatalf("systemd was not told %q", prefix)
		}
	}
}
