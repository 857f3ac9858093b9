package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/gatewayd/gatewayd/internal/app"
	"github.com/gatewayd/gatewayd/internal/config"
)

// runRole runs this binary as one of the child processes the bench
// measures: "paho" (the bare paho publisher) or "gatewayd" (the daemon
// through internal/app, under a CPU profiler).
func runRole(role string, args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch role {
	case "paho":
		err = runPaho(ctx, args)
	case "gatewayd":
		err = runGatewayd(ctx, args)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gatewayd-bench -role %s: %v\n", role, err)
		return 1
	}
	return 0
}

// runPaho publishes simulated readings with BaselinePublisher: N
// sensors read every interval (all at once, as gatewayd's scheduler does),
// or with -max as fast as the window lets it. It stops at SIGTERM or after
// -duration, waits for the outstanding acknowledgements and prints its
// counts.
func runPaho(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("paho", flag.ContinueOnError)
	url := fs.String("url", "", "broker URL")
	run := fs.String("run", "paho", "run id: the second topic level and the client id")
	sensors := fs.Int("sensors", 10, "sensors")
	interval := fs.Duration("interval", time.Second, "read interval")
	duration := fs.Duration("duration", time.Hour, "stop after this long")
	qos := fs.Int("qos", 1, "QoS")
	window := fs.Int("window", 100, "publishes in flight")
	unpaced := fs.Bool("max", false, "publish as fast as possible")
	prof := fs.String("cpuprofile", "", "write a CPU profile here")
	root := fs.String("root", "bench", "first topic level")
	progress := fs.Bool("progress", false, "print the acknowledged count at each SIGUSR1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stopProfile, err := startProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	p, err := NewBaselinePublisher(BaselineOptions{URL: *url, ClientID: "bench-" + *run}, byte(*qos), *window)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *duration)
	defer cancel()
	if *progress {
		// On request only: printing on a timer would cost more than an
		// idle publisher's own work.
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		defer signal.Stop(usr1)
		fmt.Printf("progress acked=0\n") // tells that SIGUSR1 may be sent
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-usr1:
					fmt.Printf("progress acked=%d\n", p.Acked())
				}
			}
		}()
	}
	r := newReadings(*root, *run, *sensors)
	var msgs [2]message
	readAll := func(t time.Time) {
		for i := range *sensors {
			r.read(i, t, &msgs)
			p.Publish(msgs[0].topic, msgs[0].payload)
			p.Publish(msgs[1].topic, msgs[1].payload)
		}
	}
	if *unpaced {
		for ctx.Err() == nil {
			for i := 0; i < *sensors && ctx.Err() == nil; i++ {
				r.read(i, time.Now(), &msgs)
				p.Publish(msgs[0].topic, msgs[0].payload)
				p.Publish(msgs[1].topic, msgs[1].payload)
			}
		}
	} else {
		tick := time.NewTicker(*interval)
		defer tick.Stop()
		readAll(time.Now())
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case t := <-tick.C:
				readAll(t)
			}
		}
	}
	err = p.Close(5 * time.Second)
	fmt.Printf("published=%d acked=%d failed=%d\n", p.Published(), p.Acked(), p.Failed())
	return err
}

// runGatewayd is the daemon as cmd/gatewayd runs it (config.Load, app.OneThread, app.New,
// App.Run until SIGTERM; no systemd notification), with a CPU profile of
// the whole run written to -cpuprofile.
func runGatewayd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	path := fs.String("config", "", "config file")
	prof := fs.String("cpuprofile", "", "write a CPU profile here")
	memProf := fs.String("memprofile", "", "write a heap profile here, -memprofile-at after the start")
	memAt := fs.Duration("memprofile-at", 10*time.Second, "when to write the heap profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *memProf != "" {
		t := time.AfterFunc(*memAt, func() {
			if f, err := os.Create(*memProf); err == nil {
				pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		})
		defer t.Stop()
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	app.OneThread(cfg, os.Getenv)
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	a, err := app.New(cfg, log, "bench")
	if err != nil {
		return err
	}
	stopProfile, err := startProfile(*prof)
	if err != nil {
		return err
	}
	defer stopProfile()
	return a.Run(ctx, nil)
}

// startProfile starts a CPU profile into path ("" = none).
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
