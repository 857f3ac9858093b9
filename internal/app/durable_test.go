package app_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestDurableBufferAcrossRestart: readings taken while the broker is away
// survive a shutdown of the daemon in buffer.dir, are published by the next
// run, and seq continues where it was.
func TestDurableBufferAcrossRestart(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfg := baseYAML("tcp://"+addr) + fmt.Sprintf("buffer: {dir: %q}\n", dir) + sensorsYAML(2, "20ms")

	first := startDaemon(t, cfg)
	if !first.Queue.Durable() {
		t.Fatal("buffer.dir set but the buffer is not durable")
	}
	testbroker.Eventually(t, 10*time.Second, "readings buffered", func() bool { return first.Queue.Len() >= 100 })
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	taken := value(first.Metrics.ReadingsTaken)
	if !strings.Contains(first.logs.String(), "readings kept on disk for the next start") {
		t.Error("shutdown did not say the readings were kept")
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "buffer-*.log")); len(segs) == 0 {
		t.Fatalf("no buffer log in %s", dir)
	}

	b := testbroker.StartAt(t, addr, testbroker.Options{})
	second := startDaemon(t, cfg)
	if want := fmt.Sprintf(`"msg":"buffer store opened","component":"buffer","dir":%q,"records":%v,`, dir, taken); !strings.Contains(second.logs.String(), want) {
		t.Fatalf("the second run did not find the %v readings of the first:\n%s", taken, second.logs.String())
	}
	testbroker.Eventually(t, 10*time.Second, "backlog published", func() bool {
		return second.Session.Connected() && value(second.Metrics.MQTTPublished) >= taken+8
	})
	second.stop()
	got := series(t, b.Messages(readingsOn("gatewayd/gw/s")))
	checkNoGaps(t, got, 1)
	for k, rs := range got {
		if rs[0].Seq != 1 {
			t.Errorf("%s: first seq at the broker is %d", k, rs[0].Seq)
		}
		if last := rs[len(rs)-1].Seq; float64(last) <= taken/4 {
			t.Errorf("%s: seq did not continue past the first run (last %d)", k, last)
		}
	}
}

// TestCorruptBufferMovedAside: a store that cannot be read at start is
// moved aside and counted, and the daemon runs on a fresh one.
func TestCorruptBufferMovedAside(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "buffer.db"), []byte(strings.Repeat("not a bbolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	b := testbroker.Start(t, testbroker.Options{})
	d := startDaemon(t, baseYAML(b.URL())+fmt.Sprintf("buffer: {dir: %q}\n", dir)+sensorsYAML(1, "20ms"))
	if value(d.Metrics.BufferCorrupt) != 1 || !d.Queue.Durable() {
		t.Fatalf("corrupt %v, durable %v", value(d.Metrics.BufferCorrupt), d.Queue.Durable())
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "buffer.db.corrupt-*"))
	if len(moved) != 1 {
		t.Fatalf("moved aside: %v", moved)
	}
	testbroker.Eventually(t, 10*time.Second, "readings flow", func() bool { return value(d.Metrics.MQTTPublished) >= 10 })
	if !strings.Contains(d.logs.String(), `"level":"ERROR"`) {
		t.Error("the corrupt store was not logged at error")
	}
}
