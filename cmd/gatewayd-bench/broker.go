package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	embedded "github.com/gatewayd/gatewayd/internal/broker"
)

// broker is the MQTT broker every client of a run talks to, on 127.0.0.1.
type broker interface {
	name() string
	addr() string
	// restart stops the broker and starts it again on the same port; it
	// returns when the new one accepts TCP connections, and that moment.
	restart() (time.Time, error)
	close()
}

func startBroker(kind, dir string, log *slog.Logger) (broker, error) {
	if kind == "auto" {
		kind = "embedded"
		if _, err := exec.LookPath("mosquitto"); err == nil {
			kind = "mosquitto"
		}
	}
	switch kind {
	case "mosquitto":
		return startMosquitto(dir, log, false)
	case "embedded":
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		return startMochi(addr, log)
	}
	return nil, fmt.Errorf("-broker %q: want mosquitto, embedded or auto", kind)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// waitAccepting polls addr with TCP connects until one succeeds, and
// returns when it did.
func waitAccepting(addr string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			at := time.Now()
			c.Close()
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%s does not accept connections after %s: %w", addr, timeout, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// mosquitto is Debian's mosquitto with a config of its own in the run's
// temp dir. Its queue limits are raised (FIELD-NOTES: beyond 1000 queued
// messages per client it drops QoS 1 messages to a slow subscriber
// silently); it keeps nothing on disk.
type mosquitto struct {
	conf, address, version string
	log                    *slog.Logger
	cmd                    *exec.Cmd
	done                   chan struct{}
	stderr                 *bytes.Buffer
}

// With persist, it keeps its sessions and queued messages in dir across a
// restart (SIGTERM: it saves at exit).
func startMosquitto(dir string, log *slog.Logger, persist bool) (*mosquitto, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	persistence := "persistence false"
	if persist {
		persistence = "persistence true\npersistence_location " + dir + "/"
	}
	cfg := strings.Join([]string{
		"listener " + port + " 127.0.0.1",
		"allow_anonymous true",
		persistence,
		"max_connections -1",
		"user root",
		"log_dest stderr",
		"log_type error",
		"log_type warning",
		"max_queued_messages 1000000",
		"max_queued_bytes 0",
		"max_inflight_messages 1000",
		"",
	}, "\n")
	if os.Geteuid() != 0 {
		cfg = strings.Replace(cfg, "user root\n", "", 1)
	}
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	m := &mosquitto{conf: conf, address: addr, log: log, version: "mosquitto"}
	if out, err := exec.Command("mosquitto", "-h").CombinedOutput(); err == nil || len(out) > 0 {
		if first, _, _ := strings.Cut(string(out), "\n"); strings.HasPrefix(first, "mosquitto version") {
			m.version = strings.Replace(first, " version ", " ", 1)
		}
	}
	if _, err := m.start(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mosquitto) start() (time.Time, error) {
	m.stderr = &bytes.Buffer{}
	cmd := exec.Command("mosquitto", "-c", m.conf)
	cmd.Stderr = m.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return time.Time{}, fmt.Errorf("mosquitto: %w", err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); close(m.done) }()
	at, err := waitAccepting(m.address, 10*time.Second)
	if err != nil {
		m.stop()
		return at, fmt.Errorf("mosquitto: %w (stderr: %s)", err, strings.TrimSpace(m.stderr.String()))
	}
	return at, nil
}

func (m *mosquitto) stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

func (m *mosquitto) name() string { return m.version + " (own config, 127.0.0.1)" }
func (m *mosquitto) addr() string { return m.address }
func (m *mosquitto) close()       { m.stop() }

func (m *mosquitto) restart() (time.Time, error) {
	m.stop()
	return m.start()
}

// mochi is the embedded broker of internal/broker, in this process.
type mochi struct {
	address string
	log     *slog.Logger
	b       *embedded.Broker
}

func startMochi(addr string, log *slog.Logger) (*mochi, error) {
	// mochi warns of every connection its restart cuts: not news here.
	m := &mochi{address: addr, log: slog.New(slog.DiscardHandler)}
	var err error
	if m.b, err = embedded.Start(addr, m.log); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *mochi) name() string { return "mochi-mqtt (embedded, in the bench process)" }
func (m *mochi) addr() string { return m.address }

func (m *mochi) close() {
	if m.b != nil {
		m.b.Close()
		m.b = nil
	}
}

func (m *mochi) restart() (time.Time, error) {
	m.close()
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; {
		if m.b, err = embedded.Start(m.address, m.log); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return time.Time{}, errors.Join(errors.New("embedded broker did not start again"), err)
		}
		time.Sleep(time.Millisecond)
	}
	return waitAccepting(m.address, 5*time.Second)
}
