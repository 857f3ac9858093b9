package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/sensors"
)

// listBLE starts -once's list of the Bluetooth LE devices heard while the
// sensors are read (sensors.BLESurvey: only when ble sensors are
// configured), for an operator looking for a thermometer's address. The
// list goes to w (stderr: stdout keeps its TOPIC PAYLOAD lines). The
// function returned ends the listening and waits for the list.
func listBLE(cfg *config.Config, logger *slog.Logger, w io.Writer) (wait func()) {
	names := make([]string, len(cfg.Sensors))
	srcs := make([]sensors.Config, len(cfg.Sensors))
	for i, s := range cfg.Sensors {
		names[i], srcs[i] = s.Name, s.Source
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := sensors.BLESurvey(ctx, names, srcs, w, logger); err != nil {
			logger.Warn("gatewayd -once: no list of Bluetooth devices", "err", err)
		}
	}()
	return func() { stop(); <-done }
}
