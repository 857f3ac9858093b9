package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process this tool started. It is stopped by its PID only.
type child struct {
	name string
	cmd  *exec.Cmd
	out  *tail // stdout and stderr, the last few KB
	// started is taken just before the exec.
	started time.Time
	done    chan struct{}
	// acks, when set, counts the readings the broker acknowledged.
	acks func() (uint64, error)
	err  error
}

func startChild(name, path string, args ...string) (*child, error) {
	c := &child{name: name, out: &tail{max: 64 << 10}, done: make(chan struct{})}
	c.cmd = exec.Command(path, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	// Should this tool die, the child goes too.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	c.started = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout (then SIGKILL). It returns an
// error when the child had already died or did not exit cleanly.
func (c *child) stop(timeout time.Duration) error {
	if c.exited() {
		return fmt.Errorf("%s exited early: %v: %s", c.name, c.err, c.out.String())
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(timeout):
		// A Go program prints its goroutines at SIGQUIT: where it hangs.
		c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
		return fmt.Errorf("%s did not exit within %s of SIGTERM; its output after SIGQUIT: %s", c.name, timeout, c.out.String())
	}
	if c.err != nil {
		return fmt.Errorf("%s: %v: %s", c.name, c.err, c.out.String())
	}
	return nil
}

// kill ends the child at once, for error paths.
func (c *child) kill() {
	if !c.exited() {
		c.cmd.Process.Kill()
		<-c.done
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu       sync.Mutex
	max      int
	b        []byte
	progress int
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.progress += strings.Count(string(p), progressKey)
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// progressLines is how many progress lines were written, also those no
// longer kept.
func (t *tail) progressLines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.progress
}

const progressKey = "progress acked="

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}

// usage is what /proc tells of a process at one moment.
type usage struct {
	at   time.Time
	cpu  time.Duration // user + system, all threads
	hwm  int64         // peak resident set, bytes (VmHWM)
	rss  int64         // resident set now, bytes (VmRSS)
	runs int64         // times a thread was put on a CPU: wake-ups
	thrs int
}

// sample reads the CPU time of pid from the scheduler's per-thread
// accounting (/proc/PID/task/*/schedstat, in nanoseconds: the 10 ms ticks
// of /proc/PID/stat are too coarse for an idle daemon), and its memory
// from /proc/PID/status. Go does not end its threads, so the sum over the
// live threads is the process's CPU time.
func sample(pid int) (usage, error) {
	u := usage{at: time.Now()}
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return u, fmt.Errorf("process %d: no /proc/%d/task/*/schedstat", pid, pid)
	}
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return u, fmt.Errorf("%s: %q", t, b)
		}
		u.cpu += time.Duration(ns)
		u.thrs++
		if len(f) >= 3 {
			n, _ := strconv.ParseInt(f[2], 10, 64)
			u.runs += n
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmHWM":
			dst = &u.hwm
		case "VmRSS":
			dst = &u.rss
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return u, fmt.Errorf("/proc/%d/status %s: %q", pid, k, v)
		}
		*dst = kb << 10
	}
	if u.hwm == 0 {
		return u, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
	}
	return u, nil
}

// buildGatewayd builds cmd/gatewayd of the module in the working directory
// into dir.
func buildGatewayd(dir string) (string, error) {
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("building gatewayd needs the go tool (or pass -gatewayd PATH): %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !bytes.Contains(b, []byte("module github.com/gatewayd/gatewayd")) {
		return "", errors.New("run from gatewayd's source tree, or pass -gatewayd PATH")
	}
	bin := filepath.Join(dir, "gatewayd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/gatewayd")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/gatewayd: %v\n%s", err, out)
	}
	return bin, nil
}
