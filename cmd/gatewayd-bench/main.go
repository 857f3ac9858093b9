// Command gatewayd-bench measures gatewayd end to end against a real broker
// and puts each figure beside two baselines measured in the same run on the
// same broker with the same payloads and QoS: a bare paho.mqtt.golang
// publisher (baseline.go) and a Python publisher on
// Debian's python3-paho-mqtt.
//
// Every publisher under test runs as its own child process, so that its CPU
// time (/proc/PID/task/*/schedstat) and peak RSS (VmHWM) are its own and not
// the subscriber's, the broker's or this tool's. gatewayd is the real
// cmd/gatewayd binary (built here, or -gatewayd PATH), which runs the daemon
// through internal/app; with -profile the child is instead this tool in role
// "gatewayd", which runs internal/app the same way under a CPU profiler.
// The subscriber that counts deliveries and latency runs in this process;
// the scale scenario counts the broker's acknowledgements instead, and the
// reconnect and startup scenarios time the first PUBACK with a TCP tap that
// reads the MQTT packets between a publisher and the broker.
// docs/PERFORMANCE.md explains each scenario and holds the last figures.
//
// Usage:
//
//	gatewayd-bench [flags] [throughput|idle|scale|reconnect|startup|wear|all]...
//
// Flags come before the scenario names. -short runs every scenario for a few
// seconds (CI); it exits non-zero when a part fails, not when a goal is
// missed (-strict adds that).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenarios in the order "all" runs them.
var allScenarios = []string{"throughput", "idle", "scale", "reconnect", "startup", "wear"}

type options struct {
	sensors    int
	interval   time.Duration
	duration   time.Duration
	qos        int
	window     int
	disk       bool
	short      bool
	strict     bool
	brokerKind string
	gatewayd   string
	python     string
	profile    string
	idleFor    time.Duration
	scaleN     int
	scaleFor   time.Duration
	reps       int
	rounds     int
	verbose    bool
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-role" {
		os.Exit(runRole(os.Args[2], os.Args[3:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var o options
	fs := flag.NewFlagSet("gatewayd-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.sensors, "sensors", 100, "throughput: simulated sensors (2 readings per read) for the same-rate comparison")
	fs.DurationVar(&o.interval, "interval", 100*time.Millisecond, "throughput: read interval of every sensor for the same-rate comparison")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "throughput: measured time of each run (after a warm-up)")
	fs.IntVar(&o.qos, "qos", 1, "QoS of the readings (throughput, idle, scale); reconnect and startup always use 1")
	fs.IntVar(&o.window, "window", 100, "publishes in flight: gatewayd's buffer.max_inflight and the baselines' token window")
	fs.BoolVar(&o.disk, "disk", false, "throughput and startup: also run gatewayd with the disk buffer (buffer.dir); on by default for all and -short")
	fs.BoolVar(&o.short, "short", false, "every scenario for a few seconds (CI): checks the tool works, the figures are rough")
	fs.BoolVar(&o.strict, "strict", false, "exit 3 when a goal is missed")
	fs.StringVar(&o.brokerKind, "broker", "auto", "mosquitto, embedded (mochi via internal/broker) or auto (mosquitto when installed)")
	fs.StringVar(&o.gatewayd, "gatewayd", "", "gatewayd binary to measure (default: go build ./cmd/gatewayd into a temp dir)")
	fs.StringVar(&o.python, "python", "/usr/bin/python3", "Python with paho-mqtt for the Python baseline (skipped when it cannot import paho)")
	fs.StringVar(&o.profile, "profile", "", "write CPU profiles of gatewayd (throughput and scale runs) into this directory")
	fs.DurationVar(&o.idleFor, "idle-duration", time.Minute, "idle: measured time")
	fs.IntVar(&o.scaleN, "scale-sensors", 10000, "scale: sensors of the large run (1 read/s each)")
	fs.DurationVar(&o.scaleFor, "scale-duration", 15*time.Second, "scale: measured time of each run")
	fs.IntVar(&o.reps, "reps", 5, "startup and reconnect: repetitions")
	fs.IntVar(&o.rounds, "rounds", 3, "throughput and scale: measurements of each publisher, interleaved; figures are medians")
	fs.BoolVar(&o.verbose, "v", false, "log progress")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gatewayd-bench [flags] [%s|all]...\n\n", strings.Join(allScenarios, "|"))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var which []string
	for _, a := range fs.Args() {
		switch {
		case a == "all":
			which = append(which, allScenarios...)
		case slices.Contains(allScenarios, a):
			which = append(which, a)
		default:
			fmt.Fprintf(stderr, "gatewayd-bench: unknown scenario %q\n", a)
			fs.Usage()
			return 2
		}
	}
	if len(which) == 0 {
		which = allScenarios
	}
	if !set["disk"] && (len(which) == len(allScenarios) || o.short) {
		o.disk = true
	}
	if o.short {
		o.applyShort(set)
	}
	if o.qos < 0 || o.qos > 1 || o.sensors < 1 || o.interval < 10*time.Millisecond || o.window < 1 || o.reps < 1 || o.rounds < 1 {
		fmt.Fprintln(stderr, "gatewayd-bench: need -qos 0 or 1, -sensors >= 1, -interval >= 10ms, -window >= 1, -reps >= 1, -rounds >= 1")
		return 2
	}

	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	b, err := newBench(ctx, o, log)
	if err != nil {
		fmt.Fprintln(stderr, "gatewayd-bench:", err)
		return 1
	}
	defer b.close()
	fmt.Fprintf(stdout, "gatewayd-bench: %s, %s, %d CPUs, broker %s, QoS %d, window %d%s\n",
		runtime.Version(), kernel(), runtime.NumCPU(), b.broker.name(), o.qos, o.window, map[bool]string{true: ", -short (rough figures)"}[o.short])
	for _, sc := range which {
		if ctx.Err() != nil {
			break
		}
		start := time.Now()
		log.Info("scenario", "name", sc)
		var err error
		switch sc {
		case "throughput":
			err = b.throughput()
		case "idle":
			err = b.idle()
		case "scale":
			err = b.scale()
		case "reconnect":
			err = b.reconnect()
		case "startup":
			err = b.startup()
		case "wear":
			err = b.wear()
		}
		if err != nil {
			b.fail(sc, err)
		}
		log.Info("scenario done", "name", sc, "took", time.Since(start).Round(time.Millisecond))
	}
	b.report(stdout)
	switch {
	case len(b.failures) > 0 || ctx.Err() != nil:
		return 1
	case o.strict && b.missed > 0:
		return 3
	}
	return 0
}

// applyShort shrinks every scenario to seconds, keeping what was set
// explicitly.
func (o *options) applyShort(set map[string]bool) {
	def := func(name string, f func()) {
		if !set[name] {
			f()
		}
	}
	def("duration", func() { o.duration = 800 * time.Millisecond })
	def("sensors", func() { o.sensors = 20 })
	def("idle-duration", func() { o.idleFor = time.Second })
	def("scale-sensors", func() { o.scaleN = 1000 })
	def("scale-duration", func() { o.scaleFor = 800 * time.Millisecond })
	def("reps", func() { o.reps = 2 })
	def("rounds", func() { o.rounds = 1 })
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return runtime.GOOS
	}
	return "Linux " + strings.TrimSpace(string(b))
}
