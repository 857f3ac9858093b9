package app

import (
	"runtime"

	"github.com/gatewayd/gatewayd/internal/config"
)

// OneThread runs the daemon's Go code on one thread at a time
// (GOMAXPROCS=1) unless the environment sets GOMAXPROCS or the embedded
// broker serves other clients. gatewayd waits on the network: a reading
// costs it about 10 µs of CPU, so one core carries far more than a broker
// takes, and on one thread a reading's way through its goroutines (the
// publisher, paho's writer and reader, the socket's flusher) needs no
// wake-up of another thread, which cost a fifth of its CPU at 4,000
// readings/s (docs/PERFORMANCE.md). A system call that blocks (fsync,
// serial I/O) still hands the thread on, as Go always does.
func OneThread(cfg *config.Config, getenv func(string) string) (prev int, set bool) {
	if getenv("GOMAXPROCS") != "" || cfg.EmbeddedBroker.Enabled {
		return runtime.GOMAXPROCS(0), false
	}
	return runtime.GOMAXPROCS(1), true
}
