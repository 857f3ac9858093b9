package app_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/spool"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestDiskBufferWritesOnlyWhatWaits: with buffer.dir, readings that a
// prompt broker acknowledges never reach the disk (only the seq leases
// do); when the broker stops acknowledging (a frozen link) or goes away,
// what waits goes to disk after spool.DefaultSpillAfter; nothing is lost
// either way.
func TestDiskBufferWritesOnlyWhatWaits(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	p := testbroker.NewProxy(t, b.Addr())
	d := startDaemon(t, baseYAML(p.URL())+fmt.Sprintf("buffer: {dir: %q}\n", t.TempDir())+sensorsYAML(2, "20ms"))
	m := d.Metrics
	disk := d.Queue.(*spool.Disk)
	testbroker.Eventually(t, 10*time.Second, "200 readings published", func() bool { return value(m.MQTTPublished) >= 200 })

	// A prompt broker: the readings stay in memory until their PUBACK.
	// This test process is the daemon: what it writes to storage is the
	// buffer's (the broker, the logs and the metrics are in memory).
	w0, p0 := writeBytes(t), value(m.MQTTPublished)
	time.Sleep(2 * time.Second)
	w1, p1 := writeBytes(t), value(m.MQTTPublished)
	perReading := float64(w1-w0) / (p1 - p0)
	t.Logf("prompt broker: %d bytes written for %.0f readings (%.1f per reading), %v commits in all", w1-w0, p1-p0, perReading, value(m.BufferDiskCommits))
	if n := disk.Written(); n != 0 || perReading > 50 {
		t.Errorf("prompt broker: %d readings written to disk, %.1f bytes per reading", n, perReading)
	}

	// A frozen link: nothing is acknowledged, and after SpillAfter what
	// waits is written. A reading waits SpillAfter from when it was
	// taken, not from the freeze: those still unacknowledged at the
	// freeze (in flight, their PUBACKs slow on a loaded machine) had
	// waited already, the oldest of them for waited.
	oldest, ok := d.Queue.Oldest()
	p.Blackhole()
	frozen := time.Now()
	var waited time.Duration
	if ok && oldest.Before(frozen) {
		waited = frozen.Sub(oldest)
	}
	testbroker.Eventually(t, 10*time.Second, "readings written to disk", func() bool { return disk.Written() > 0 })
	spilled := time.Since(frozen)
	t.Logf("frozen link: readings written after %s (the oldest one waiting had waited %s at the freeze)", spilled.Round(time.Millisecond), waited.Round(time.Millisecond))
	if spilled+waited < spool.DefaultSpillAfter-100*time.Millisecond {
		t.Errorf("readings written %s after the link froze, the oldest having waited %s, before they waited %s", spilled, waited, spool.DefaultSpillAfter)
	}
	p.Restore()
	testbroker.Eventually(t, 15*time.Second, "reconnected and drained", func() bool {
		return d.Session.Connected() && d.Queue.Len() == 0
	})

	// The broker away: the same.
	written := disk.Written()
	b.Stop()
	testbroker.Eventually(t, 10*time.Second, "readings written to disk", func() bool { return disk.Written() > written+50 })
	b.Restart()
	testbroker.Eventually(t, 15*time.Second, "reconnected and drained", func() bool {
		return d.Session.Connected() && d.Queue.Len() == 0
	})
	d.stop()
	checkNoGaps(t, series(t, b.Messages(readingsOn("gatewayd/gw/s"))), 1)
}

// writeBytes is /proc/self/io's write_bytes: what this process caused to
// be written to storage.
func writeBytes(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("/proc/self/io has no write_bytes")
	return 0
}
