package main

import (
	"context"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/gatewayd/gatewayd/internal/app"
	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
)

// runDaemon runs until SIGINT or SIGTERM and tells systemd where it is:
// READY=1 once the config is loaded and the listeners are up, watchdog pings
// while the loops make progress, STOPPING=1 when the shutdown begins.
func runDaemon(cfg *config.Config, log *slog.Logger) error {
	ctx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()

	a, err := app.New(cfg, log, version)
	if err != nil {
		return err
	}
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("cannot notify systemd", "err", err)
	}
	wctx, stopWatchdog := context.WithCancel(ctx)
	defer stopWatchdog()
	go watchdog(wctx, a.Liveness, log)

	return a.Run(ctx, func() {
		stopSignals() // a second signal kills at once
		stopWatchdog()
		daemon.SdNotify(false, daemon.SdNotifyStopping)
	})
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
