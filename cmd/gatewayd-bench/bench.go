package main

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

//go:embed baseline.py
var pythonBaseline []byte

// bench holds what every scenario shares: the broker, the subscriber, the
// binaries, and the results.
type bench struct {
	o        options
	ctx      context.Context
	log      *slog.Logger
	dir      string
	broker   broker
	hub      *hub
	gatewayd string // the gatewayd binary
	self     string // this binary, for the paho and gatewayd roles
	python   string // "" when the Python baseline cannot run
	pyScript string
	runs     int
	children []*child // every child started, to be sure none outlives the bench

	rows     []row
	notes    []string
	failures []string
	missed   int
}

func newBench(ctx context.Context, o options, log *slog.Logger) (b *bench, err error) {
	b = &bench{o: o, ctx: ctx, log: log}
	if b.dir, err = os.MkdirTemp("", "gatewayd-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.self, err = os.Executable(); err != nil {
		return nil, err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return nil, err
		}
	}
	b.gatewayd = o.gatewayd
	if b.gatewayd == "" {
		if b.gatewayd, err = buildGatewayd(b.dir); err != nil {
			return nil, err
		}
	}
	b.pyScript = filepath.Join(b.dir, "baseline.py")
	if err := os.WriteFile(b.pyScript, pythonBaseline, 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command(o.python, "-c", "import paho.mqtt.client").CombinedOutput(); err == nil {
		b.python = o.python
	} else {
		b.note("Python baseline skipped: %s cannot import paho.mqtt.client (apt-get install python3-paho-mqtt): %v %s", o.python, err, out)
	}
	if b.broker, err = startBroker(o.brokerKind, b.dir, log); err != nil {
		return nil, err
	}
	if b.hub, err = newHub("tcp://" + b.broker.addr()); err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	return b, nil
}

func (b *bench) close() {
	for _, c := range b.children {
		c.kill() // a child left behind by a failed part
	}
	if b.hub != nil {
		b.hub.close()
	}
	if b.broker != nil {
		b.broker.close()
	}
	os.RemoveAll(b.dir)
}

func (b *bench) fail(part string, err error) {
	b.failures = append(b.failures, part+": "+err.Error())
	b.log.Error("part failed", "part", part, "err", err)
}

func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// sleep waits d unless the bench is interrupted.
func (b *bench) sleep(d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

// Publisher kinds.
const (
	kindGatewayd = "gatewayd"
	kindPaho     = "paho"
	kindPython   = "python"
)

// pub describes one publisher to start.
type pub struct {
	kind     string
	url      string // default: the broker
	sensors  int
	interval time.Duration
	qos      int
	window   int
	disk     bool // gatewayd: buffer.dir
	max      bool // paho: as fast as possible
	profile  bool // gatewayd: run internal/app under the profiler
	bound    time.Duration
	// unobserved publishes under scale/ where the subscriber does not
	// listen, and counts what the broker acknowledged instead (gatewayd's
	// gatewayd_mqtt_messages_published_total, the paho role's progress).
	unobserved bool
}

// launch starts p as a child process under a new run id.
func (b *bench) launch(p pub) (run string, c *child, err error) {
	b.runs++
	name := p.kind
	if p.disk {
		name += "-disk"
	}
	run = fmt.Sprintf("%s-%d", name, b.runs)
	if p.url == "" {
		p.url = "tcp://" + b.broker.addr()
	}
	if p.window == 0 {
		p.window = b.o.window
	}
	if p.bound == 0 {
		p.bound = time.Hour
	}
	b.hub.track(run)
	root, metricsAddr := "bench", "127.0.0.1:0"
	if p.unobserved {
		root = "scale"
		if metricsAddr, err = freeAddr(); err != nil {
			return run, nil, err
		}
	}
	defer func() {
		if err == nil && p.unobserved {
			c.acks = acksOf(p.kind, c, metricsAddr)
		}
	}()
	switch p.kind {
	case kindGatewayd:
		cfg := gwConfig{run: run, root: root, url: p.url, sensors: p.sensors, interval: p.interval, qos: p.qos, window: p.window, metrics: metricsAddr}
		if p.disk {
			cfg.dir = filepath.Join(b.dir, run+"-spool")
		}
		if err := cfg.check(); err != nil {
			return run, nil, fmt.Errorf("generated config: %w", err)
		}
		path := filepath.Join(b.dir, run+".yaml")
		if err := os.WriteFile(path, cfg.yaml(), 0o644); err != nil {
			return run, nil, err
		}
		if p.profile && b.o.profile != "" {
			prof := filepath.Join(b.o.profile, run+".cpu.pprof")
			c, err = startChild(run, b.self, "-role", "gatewayd", "-config", path, "-cpuprofile", prof)
			b.note("CPU profile of %s: %s", run, prof)
		} else {
			c, err = startChild(run, b.gatewayd, "-config", path)
		}
	case kindPaho:
		args := []string{"-role", "paho", "-url", p.url, "-run", run, "-sensors", strconv.Itoa(p.sensors),
			"-interval", p.interval.String(), "-qos", strconv.Itoa(p.qos), "-window", strconv.Itoa(p.window),
			"-duration", p.bound.String(), "-root", root}
		if p.unobserved {
			args = append(args, "-progress")
		}
		if p.max {
			args = append(args, "-max")
		}
		if p.profile && b.o.profile != "" {
			prof := filepath.Join(b.o.profile, run+".cpu.pprof")
			args = append(args, "-cpuprofile", prof)
			b.note("CPU profile of %s: %s", run, prof)
		}
		c, err = startChild(run, b.self, args...)
	case kindPython:
		if b.python == "" {
			return run, nil, errNoPython
		}
		host, port, _ := net.SplitHostPort(p.url[len("tcp://"):])
		if p.unobserved {
			return run, nil, errors.New("the Python baseline cannot count unobserved")
		}
		c, err = startChild(run, b.python, b.pyScript, "--host", host, "--port", port, "--run", run,
			"--sensors", strconv.Itoa(p.sensors), "--interval", strconv.FormatFloat(p.interval.Seconds(), 'f', -1, 64),
			"--qos", strconv.Itoa(p.qos), "--window", strconv.Itoa(p.window), "--duration", strconv.FormatFloat(p.bound.Seconds(), 'f', -1, 64))
	default:
		return run, nil, fmt.Errorf("unknown publisher kind %q", p.kind)
	}
	if c != nil {
		b.children = append(b.children, c)
	}
	return run, c, err
}

var errNoPython = errors.New("no Python with paho-mqtt")

// acksOf returns how an unobserved publisher's acknowledged readings are
// counted.
func acksOf(kind string, c *child, metricsAddr string) func() (uint64, error) {
	if kind == kindGatewayd {
		url := "http://" + metricsAddr + "/metrics"
		return func() (uint64, error) { return scrapeCounter(url, "gatewayd_mqtt_messages_published_total") }
	}
	const key = progressKey
	return func() (uint64, error) {
		before := c.out.progressLines()
		if before == 0 {
			return 0, nil // not ready for SIGUSR1 yet
		}
		if err := c.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			return 0, err
		}
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
			if c.out.progressLines() > before {
				out := c.out.String()
				i := strings.LastIndex(out, key)
				if i >= 0 {
					line, _, _ := strings.Cut(out[i+len(key):], "\n")
					return strconv.ParseUint(strings.TrimSpace(line), 10, 64)
				}
			}
			if time.Now().After(deadline) {
				return 0, fmt.Errorf("%s does not report its progress", c.name)
			}
		}
	}
}

// scrapeCounter reads one counter without labels from a /metrics page.
func scrapeCounter(url, name string) (uint64, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return uint64(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}

var httpClient = &http.Client{Timeout: 30 * time.Second} // 10,000 sensors: 6.6 MB, about 1 s

// result is one publisher's figures over a measured window.
type result struct {
	run       string
	delivered uint64
	window    time.Duration // of the CPU samples
	counted   time.Duration // between the two counts
	cpu       time.Duration
	hwm, rss  int64
	runs      int64 // wake-ups in the window
	p50, p99  time.Duration
	gaps      uint64
	dups      uint64
}

func (r result) rate() float64 { return float64(r.delivered) / r.counted.Seconds() }

// cpuPer100k is CPU seconds per 100,000 delivered readings.
func (r result) cpuPer100k() float64 {
	if r.delivered == 0 {
		return 0
	}
	return r.cpu.Seconds() / float64(r.delivered) * 1e5
}

// cpuPct is the CPU use in percent of one core.
func (r result) cpuPct() float64 { return r.cpu.Seconds() / r.window.Seconds() * 100 }

// running is a started publisher being measured.
type running struct {
	b   *bench
	run string
	c   *child
	u0  usage
	s0  snapshot
}

// start launches p and waits for its first delivered reading.
func (b *bench) start(p pub) (*running, error) {
	run, c, err := b.launch(p)
	if err != nil {
		if c != nil {
			c.kill()
		}
		return nil, err
	}
	r := &running{b: b, run: run, c: c}
	alive := func() bool { return !c.exited() && b.ctx.Err() == nil }
	if c.acks != nil {
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if n, err := c.acks(); err == nil && n > 0 {
				return r, nil
			}
			if !alive() || time.Now().After(deadline) {
				c.kill()
				return nil, fmt.Errorf("%s: no reading acknowledged within 30s: %s", run, c.out.String())
			}
		}
	}
	if !b.hub.waitFirst(run, 1, 30*time.Second, alive) {
		c.kill()
		return nil, fmt.Errorf("%s: no reading arrived at the subscriber within 30s: %s", run, c.out.String())
	}
	return r, nil
}

// begin starts the measured window.
func (r *running) begin() error {
	// Count first: the work of answering the count (a scrape of
	// gatewayd's /metrics) stays outside the measured window.
	var err error
	if r.s0, err = r.count(); err != nil {
		return err
	}
	if r.u0, err = sample(r.c.pid()); err != nil {
		return err
	}
	r.b.hub.record(r.run, true)
	return nil
}

// count is the publisher's tally now: from the subscriber, or for an
// unobserved one, from its acknowledged count.
func (r *running) count() (snapshot, error) {
	if r.c.acks == nil {
		return r.b.hub.snapshot(r.run), nil
	}
	n, err := r.c.acks()
	return snapshot{n: n, at: time.Now()}, err
}

// end closes the measured window; the publisher keeps running.
func (r *running) end() (result, error) {
	u1, err := sample(r.c.pid())
	if err != nil {
		return result{}, err
	}
	s1, err := r.count()
	if err != nil {
		return result{}, err
	}
	r.b.hub.record(r.run, false)
	res := result{
		run:       r.run,
		delivered: s1.n - r.s0.n,
		window:    u1.at.Sub(r.u0.at),
		counted:   s1.at.Sub(r.s0.at),
		cpu:       u1.cpu - r.u0.cpu,
		hwm:       u1.hwm,
		runs:      u1.runs - r.u0.runs,
		rss:       u1.rss,
		gaps:      s1.gaps - r.s0.gaps,
		dups:      s1.dups - r.s0.dups,
	}
	res.p50, res.p99, _ = r.b.hub.latency(r.run)
	return res, nil
}

// stop ends the publisher (SIGTERM; gatewayd drains for up to 5 s).
func (r *running) stop() error {
	defer r.b.hub.forget(r.run)
	return r.c.stop(20 * time.Second)
}

// measure runs p: start, warm-up, a measured window of d, stop.
func (b *bench) measure(p pub, warmup, d time.Duration) (result, error) {
	b.log.Info("measuring", "kind", p.kind, "sensors", p.sensors, "interval", p.interval, "max", p.max, "disk", p.disk)
	r, err := b.start(p)
	if err != nil {
		return result{}, err
	}
	res, err := func() (result, error) {
		if err := b.sleep(warmup); err != nil {
			return result{}, err
		}
		if err := r.begin(); err != nil {
			return result{}, err
		}
		if err := b.sleep(d); err != nil {
			return result{}, err
		}
		res, err := r.end()
		if err == nil && res.delivered == 0 {
			err = fmt.Errorf("%s: nothing delivered in the measured %s", r.run, res.window.Round(time.Millisecond))
		}
		return res, err
	}()
	if err != nil {
		r.c.kill()
		b.hub.forget(r.run)
		return res, err
	}
	return res, r.stop()
}
