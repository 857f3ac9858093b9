package spool

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	crashDirEnv   = "GATEWAYD_SPOOL_CRASH_DIR"
	crashInterval = 100 * time.Millisecond
)

// TestDiskCrashChild is the process TestDiskSIGKILL kills: it appends
// about 10k readings a second, stamped with the time, and prints what the
// flusher has committed.
func TestDiskCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the child process of TestDiskSIGKILL")
	}
	q, err := Open(Options{Dir: dir, MaxMessages: 1 << 30, MaxBytes: 1 << 40, SyncInterval: crashInterval})
	if err != nil {
		t.Fatal(err)
	}
	d := q.(*Disk)
	var committed uint64
	for i := 1; ; i++ {
		d.Append(&Record{Topic: "t", Payload: []byte("reading"), Time: time.Now().UnixNano()})
		if c := committedNext(d) - 1; c != committed {
			committed = c
			fmt.Printf("committed %d\n", c)
		}
		if i%10 == 0 {
			time.Sleep(time.Millisecond) // the pace of the readings
		}
	}
}

// TestDiskSIGKILL kills a process that is appending: reopened, the store
// is intact, holds every record the child saw committed, and lost only
// what came in during about the last SyncInterval.
func TestDiskSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskCrashChild$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // when the test fails early
	var seen uint64
	commits := 0
	for sc := bufio.NewScanner(out); commits < 5 && sc.Scan(); {
		if s, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
			seen, _ = strconv.ParseUint(s, 10, 64)
			commits++
		}
	}
	killedAt := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if commits < 5 {
		t.Fatalf("the child stopped after %d commits", commits)
	}

	d := openTestDisk(t, Options{Dir: dir, OnCorrupt: func(string) { t.Error("store corrupt after SIGKILL") }})
	var last Record
	for buf := make([]Record, 0, 1000); ; {
		recs := d.Peek(last.ID, buf)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.ID != last.ID+1 {
				t.Fatalf("record %d follows %d", r.ID, last.ID)
			}
			last = r
		}
	}
	lost := killedAt.Sub(time.Unix(0, last.Time))
	t.Logf("recovered %d records, the child reported %d committed; lost the last %v", last.ID, seen, lost)
	if last.ID < seen {
		t.Fatalf("recovered %d records, but %d were committed", last.ID, seen)
	}
	// A commit starts every SyncInterval; allow for the commit's own fsync
	// and a busy machine.
	if lost > crashInterval+time.Second {
		t.Fatalf("lost the last %v of readings; SyncInterval is %v", lost, crashInterval)
	}
}
