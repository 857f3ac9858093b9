package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/gatewayd/gatewayd/internal/app"
	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/logging"
	"github.com/gatewayd/gatewayd/internal/metrics"
)

// runDaemon runs until SIGINT or SIGTERM, reloads the config file at path
// on SIGHUP, and tells systemd where it is: READY=1 once the config is
// loaded and the listeners are up, RELOADING=1 and READY=1 around a reload,
// watchdog pings while the loops make progress, STOPPING=1 when the
// shutdown begins.
func runDaemon(cfg *config.Config, logs *logging.Switch, path string) error {
	log := logs.Logger()
	if n, set := app.OneThread(cfg, os.Getenv); set {
		log.Debug("goroutines run on one thread (GOMAXPROCS=1); set GOMAXPROCS to change", "cpus", n)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP) // before anything: an early SIGHUP must not kill
	defer signal.Stop(hup)
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	a, err := app.New(cfg, log, version)
	if err != nil {
		return err
	}
	a.Logs = logs
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go watchdog(wctx, a.Liveness, log)
	go func() {
		for {
			select {
			case <-wctx.Done():
				return
			case <-hup:
				reload(wctx, a, path, log)
			}
		}
	}()

	return a.Run(ctx, func() {
		stopSignals() // a second signal kills at once
		stopWatchdog()
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	})
}

// reload reads the config file again and applies it (SIGHUP, systemctl
// reload). A file that does not load changes nothing: each of its errors is
// logged with its file, line and key, and the daemon goes on with the
// config it has.
func reload(ctx context.Context, a *app.App, path string, log *slog.Logger) {
	notifyReloading(log)
	defer daemon.SdNotify(false, daemon.SdNotifyReady)
	log.Info("reloading the config", "file", path)
	cfg, err := config.Load(path)
	if err != nil {
		a.ReloadRefused()
		var errs config.Errors
		if !errors.As(err, &errs) {
			log.Error("config not reloaded; keeping the running one", "err", err)
			return
		}
		for _, e := range errs {
			log.Error("config not reloaded; keeping the running one", "file", e.File, "line", e.Line, "key", e.Path, "err", e.Msg)
		}
		return
	}
	if err := a.Reload(ctx, cfg); err != nil {
		log.Error("config not reloaded; keeping the running one", "file", path, "err", err)
	}
}

// notifyReloading tells systemd a reload began, with the monotonic time
// its notify-reload protocol wants (systemd 253+); older ones take
// RELOADING=1 alone.
func notifyReloading(log *slog.Logger) {
	var ts unix.Timespec
	msg := daemon.SdNotifyReloading
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Sec*1_000_000+ts.Nsec/1000)
	}
	if _, err := daemon.SdNotify(false, msg); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
}

// watchdog pings systemd's watchdog at half its interval, only while every
// loop makes progress; without WATCHDOG_USEC it does nothing.
func watchdog(ctx context.Context, live *metrics.Liveness, log *slog.Logger) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := live.Check(); err != nil {
				log.Error("not pinging the systemd watchdog", "err", err)
				continue
			}
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}
