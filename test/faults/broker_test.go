//go:build faults

package faults

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// durability is how often a test's mosquitto writes its database to disk.
// Only a SIGKILL tells them apart: on SIGTERM mosquitto always saves.
//
// mosquitto 2.0 keeps everything in memory and writes a snapshot of all of
// it (sessions, subscriptions, queued messages) from its one thread. There
// is no setting that saves each acknowledged message before its PUBACK:
// "autosave_on_changes true" with "autosave_interval 1" comes closest (a
// snapshot after every pass of the event loop that queued a message), but a
// snapshot costs time in proportion to the queue, so with a subscriber away
// it is quadratic: measured here, 3000 QoS 1 messages queued for an absent
// subscriber took 10.6 s on disk (2 s on tmpfs) against 0.7 s with
// "autosave_interval 1" alone, and after an outage the broker answered
// gatewayd's backlog so slowly that gatewayd (keepalive 2 s) declared it
// dead, again and again.
type durability int

const (
	// autosaveShort: "autosave_interval 1". mosquitto saves once more than
	// that many whole seconds have passed, so in practice every 2 s (seen
	// in its log). A SIGKILL loses the changes since the last snapshot;
	// messages it had already passed to a connected subscriber are safe.
	autosaveShort durability = iota
	// autosaveDefault is mosquitto's default: a snapshot every 1800 s and
	// at a clean exit.
	autosaveDefault
)

// broker is one mosquitto process with its own config, port and
// persistence directory; it can be stopped and started again on the same
// port with the same database.
type broker struct {
	t       *testing.T
	dir     string
	port    int
	conf    string
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	// When the last start launched the process, and when the test first
	// saw it accept a connection (a client polling faster may connect a
	// few milliseconds before that).
	launched, listening time.Time
}

// newBroker writes a config for a mosquitto on a free port of 127.0.0.1
// (with extra config lines) and starts it.
func newBroker(t *testing.T, d durability, extra ...string) *broker {
	t.Helper()
	b := &broker{t: t, dir: t.TempDir(), port: freePort(t)}
	b.conf = filepath.Join(b.dir, "mosquitto.conf")
	b.logPath = filepath.Join(b.dir, "mosquitto.log")
	lines := []string{
		fmt.Sprintf("listener %d 127.0.0.1", b.port),
		"allow_anonymous true",
		"persistence true",
		"persistence_location " + b.dir + "/",
		// The default, 1000 per client, silently drops QoS 1 messages
		// queued for an absent subscriber while the publisher gets PUBACKs.
		"max_queued_messages 1000000",
		"log_timestamp_format %Y-%m-%dT%H:%M:%S",
		// Not "information": it logs every save.
		"log_type error", "log_type warning", "log_type notice",
	}
	if d == autosaveShort {
		lines = append(lines, "autosave_interval 1")
	}
	lines = append(lines, extra...)
	if os.Geteuid() == 0 {
		lines = append(lines, "user root") // else it drops to "mosquitto", which cannot write b.dir
	}
	if err := os.WriteFile(b.conf, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if b.running() {
			b.cmd.Process.Signal(syscall.SIGCONT)
			b.cmd.Process.Kill()
			<-b.exited
		}
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", tail(b.logPath, 30))
		}
	})
	b.start()
	return b
}

func (b *broker) url() string { return fmt.Sprintf("tcp://127.0.0.1:%d", b.port) }

func (b *broker) running() bool {
	if b.cmd == nil {
		return false
	}
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// start runs mosquitto and returns once it accepts connections.
func (b *broker) start() {
	b.t.Helper()
	f, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.t.Fatal(err)
	}
	b.cmd = exec.Command("mosquitto", "-c", b.conf)
	b.cmd.Stdout, b.cmd.Stderr = f, f
	b.launched = time.Now()
	if err := b.cmd.Start(); err != nil {
		f.Close()
		b.t.Fatal(err)
	}
	exited := make(chan struct{})
	b.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		f.Close()
		close(exited)
	}(b.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			b.t.Fatalf("mosquitto exited at start:\n%s", tail(b.logPath, 20))
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", b.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
			b.listening = time.Now()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("mosquitto not listening on port %d after 10s", b.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig to the running mosquitto.
func (b *broker) signal(sig syscall.Signal) {
	b.t.Helper()
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.t.Fatalf("mosquitto: %v: %v", sig, err)
	}
}

// stop sends sig and waits until mosquitto has exited.
func (b *broker) stop(sig syscall.Signal) {
	b.t.Helper()
	b.signal(sig)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		b.t.Fatalf("mosquitto still running 10s after %v", sig)
	}
}

// waitSaved waits until the broker wrote its database after since, so that
// what it held then survives a SIGKILL.
func (b *broker) waitSaved(since time.Time) {
	b.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if fi, err := os.Stat(filepath.Join(b.dir, "mosquitto.db")); err == nil && fi.ModTime().After(since) {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatal("mosquitto did not save its database within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tail returns the last n lines of a file, for failure messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
