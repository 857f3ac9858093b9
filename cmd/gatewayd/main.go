// Command gatewayd is a sensor gateway daemon: it reads temperature and
// humidity sensors, publishes the readings over one persistent MQTT session,
// logs the messages that arrive on its subscriptions, and serves its health
// and counters to Prometheus. This file holds the flags, the logger and the
// signals; daemon.go wires the components.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/gateway"
	"github.com/gatewayd/gatewayd/internal/logging"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// Exit codes (SPEC.md).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
)

const defaultConfig = "/etc/gatewayd/gateway.yaml"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", defaultConfig, "path of the YAML config file")
	check := fs.Bool("check", false, "validate the config, print a summary and exit (0 valid, 2 invalid)")
	once := fs.Bool("once", false, "read every sensor once, print \"TOPIC PAYLOAD\" lines and exit; no broker needed")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gatewayd [-config PATH] [-check | -once | -version]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gatewayd: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return exitUsage
	}
	if *check && *once {
		fmt.Fprintln(stderr, "gatewayd: -check and -once exclude each other")
		return exitUsage
	}
	if *showVersion {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *check {
		printSummary(stdout, cfg)
		return exitOK
	}
	logs := logging.New(stderr, cfg.Log)
	logger := logs.Logger()
	if *once {
		return readOnce(cfg, logger, stdout, stderr)
	}
	if err := runDaemon(cfg, logs, *path); err != nil {
		logger.Error("gatewayd stopped", "err", err)
		return exitRuntime
	}
	return exitOK
}

// readOnce is -once: read every sensor (wait for a push sensor's first
// transmission, up to gateway.OnceWait), print, exit 1 if any failed or was
// not heard.
func readOnce(cfg *config.Config, logger *slog.Logger, stdout, stderr io.Writer) int {
	m := metrics.New(version)
	q := spool.NewMemory(cfg.Buffer.MaxMessages, int64(cfg.Buffer.MaxBytes), 1)
	p, err := gateway.NewPoller(cfg, q, m, logger, metrics.NewLiveness(time.Minute))
	if err != nil {
		logger.Error("cannot set up the sensors", "err", err)
		return exitRuntime
	}
	listed := listBLE(cfg, logger, stderr)
	err = p.ReadOnce(context.Background(), stdout, gateway.OnceWait)
	listed()
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			logger.Error("gatewayd -once", "err", line)
		}
		return exitRuntime
	}
	return exitOK
}

func printSummary(w io.Writer, c *config.Config) {
	fmt.Fprintf(w, "%s: OK\n", c.File)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "  %-17s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	row("gateway id", "%s", c.Gateway.ID)
	if c.EmbeddedBroker.Enabled {
		row("embedded broker", "on %s", c.EmbeddedBroker.Listen)
	}
	row("broker", "%s", strings.Join(c.Broker.URLs, ", "))
	session := "persistent session"
	if c.Broker.CleanSession {
		session = "clean session"
	}
	row("client id", "%s (%s, keepalive %s)", c.Broker.ClientID, session, c.Broker.Keepalive)
	if c.Broker.Availability.Topic != "" {
		row("availability", "%s (%s / %s)", c.Broker.Availability.Topic, c.Broker.Availability.Online, c.Broker.Availability.Offline)
	}
	row("publish", "%s, %s, QoS %d, retain %t", c.Publish.Topic, c.Publish.Format, c.Publish.QoS, c.Publish.Retain)
	where := "memory"
	if c.Buffer.Dir != "" {
		where = "disk in " + c.Buffer.Dir
	}
	row("buffer", "%s, at most %d readings / %s, %d in flight", where, c.Buffer.MaxMessages, c.Buffer.MaxBytes, c.Buffer.MaxInflight)
	row("sensors", "%d", len(c.Sensors))
	for _, s := range c.Sensors {
		switch {
		case !s.Push():
			fmt.Fprintf(w, "    - %s (%s, every %s, timeout %s)\n", s.Name, s.Type, s.Interval, s.Timeout)
		case s.Interval > 0:
			fmt.Fprintf(w, "    - %s (%s, pushed, at most every %s, stale after %s)\n", s.Name, s.Type, s.Interval, s.StaleAfter)
		default:
			fmt.Fprintf(w, "    - %s (%s, pushed, every transmission, stale after %s)\n", s.Name, s.Type, s.StaleAfter)
		}
	}
	row("subscriptions", "%d", len(c.Subscriptions))
	for _, s := range c.Subscriptions {
		fmt.Fprintf(w, "    - %s (QoS %d)\n", s.Topic, s.QoS)
	}
	row("metrics", "http://%s/metrics", c.Metrics.Listen)
	if h := c.HomeAssistant; h.Discovery {
		row("home assistant", "discovery on %s/#", h.Prefix)
	}
}
