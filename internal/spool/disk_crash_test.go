package spool

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	crashDirEnv  = "GATEWAYD_SPOOL_CRASH_DIR"
	crashModeEnv = "GATEWAYD_SPOOL_CRASH_MODE" // "connected" or "outage"
	// The child leases 1 s of readings, so that a run of a few seconds
	// renews every lease several times.
	crashLease = time.Second
)

// crashSeries are the child's series and their intervals.
var crashSeries = []struct {
	key   string
	every time.Duration
}{{"fast/q", 2 * time.Millisecond}, {"mid/q", 20 * time.Millisecond}, {"slow/q", 200 * time.Millisecond}}

// TestDiskCrashChild is the process TestDiskSIGKILL kills. It takes
// readings of three series at their rates and publishes them as the
// daemon's publisher does (Peek, from a cursor): connected, it acks each
// one at once (a prompt broker); in an outage, never. It prints every seq
// it published and what the flusher committed.
func TestDiskCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("the child process of TestDiskSIGKILL")
	}
	connected := os.Getenv(crashModeEnv) == "connected"
	q, err := Open(Options{Dir: dir, MaxMessages: 1 << 30, MaxBytes: 1 << 40, seqLease: crashLease})
	if err != nil {
		t.Fatal(err)
	}
	d := q.(*Disk)
	var out sync.Mutex
	printf := func(format string, args ...any) {
		out.Lock()
		fmt.Printf(format, args...)
		out.Unlock()
	}
	go func() { // the publisher
		var after, committed uint64
		buf := make([]Record, 0, 64)
		for {
			recs := q.Peek(after, buf)
			for _, r := range recs {
				printf("pub %s %d\n", r.SeqKey, r.Seq)
				if connected {
					q.Ack(r.ID)
				}
				after = r.ID
			}
			if c := committedNext(d) - 1; c != committed {
				committed = c
				printf("committed %d\n", c)
			}
			if len(recs) == 0 {
				select {
				case <-q.Notify():
				case <-time.After(time.Millisecond):
				}
			}
		}
	}()
	seqs := make([]uint64, len(crashSeries))
	next := make([]time.Time, len(crashSeries))
	for {
		now := time.Now()
		for i, s := range crashSeries {
			if now.Before(next[i]) {
				continue
			}
			seqs[i]++
			q.Append(&Record{Topic: "t/" + s.key, Payload: []byte("reading"), QoS: 1, Time: now.UnixNano(), SeqKey: s.key, Seq: seqs[i]})
			printf("took %s %d\n", s.key, seqs[i])
			next[i] = now.Add(s.every)
		}
		time.Sleep(time.Until(slicesMin(next)))
	}
}

func slicesMin(ts []time.Time) time.Time {
	m := ts[0]
	for _, t := range ts[1:] {
		if t.Before(m) {
			m = t
		}
	}
	return m
}

// TestDiskSIGKILL kills a process that is taking and publishing readings.
// Reopened, the log is intact; no seq that the child published is given
// again, and each series' numbering jumps by at most its lease (the
// readings of crashLease at its rate) plus what was taken and never
// published. In an outage the log also holds every record the child saw
// committed, and lost only what came in during about the last SpillAfter.
func TestDiskSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a child process")
	}
	for _, mode := range []string{"connected", "outage"} {
		t.Run(mode, func(t *testing.T) { crashOnce(t, mode) })
	}
}

func crashOnce(t *testing.T, mode string) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDiskCrashChild$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashModeEnv+"="+mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() }) // when the test fails early
	published, took := map[string]uint64{}, map[string]uint64{}
	var committed uint64
	line := func(l string) {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "pub":
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			published[f[1]] = max(published[f[1]], seq)
		case len(f) == 3 && f[0] == "took":
			seq, _ := strconv.ParseUint(f[2], 10, 64)
			took[f[1]] = max(took[f[1]], seq)
		case len(f) == 2 && f[0] == "committed":
			committed, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(out); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	// Long enough for several lease renewals and, in an outage, commits;
	// the kill comes at a moment that depends on the machine's pace.
	deadline := time.After(3*time.Second + time.Duration(time.Now().UnixNano()%int64(time.Second)))
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the child stopped")
			}
			line(l)
		case <-deadline:
			break read
		}
	}
	killedAt := time.Now()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for l := range lines { // what the child printed before it died
		line(l)
	}
	_ = cmd.Wait()

	d := openTestDisk(t, Options{Dir: dir, OnCorrupt: func(string) { t.Error("store corrupt after SIGKILL") }})
	var last Record
	taken := map[string]uint64{} // the highest seq on disk per series
	for buf := make([]Record, 0, 1000); ; {
		recs := d.Peek(last.ID, buf)
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if mode == "outage" && r.ID != last.ID+1 {
				t.Fatalf("record %d follows %d", r.ID, last.ID)
			}
			taken[r.SeqKey] = max(taken[r.SeqKey], r.Seq)
			last = r
		}
	}
	seqs := d.Seqs()
	for _, s := range crashSeries {
		pub, after, last := published[s.key], seqs[s.key], took[s.key]
		rate := float64(time.Second) / float64(s.every)
		lease := uint64(math.Ceil(rate * crashLease.Seconds()))
		// The child may have taken a reading or two after the last line
		// it printed.
		slack := uint64(math.Ceil(rate*0.01)) + 1
		t.Logf("%s (%.0f/s): took up to %d, published up to %d, continues after %d: a jump of %d (lease %d, lost %d)",
			s.key, rate, last, pub, after, after-min(after, pub), lease, last-min(last, pub))
		if pub == 0 {
			t.Errorf("%s: nothing published", s.key)
		}
		if after < pub || after < taken[s.key] {
			t.Errorf("%s: numbering continues after %d, but %d was published and %d is on disk: seqs given again", s.key, after, pub, taken[s.key])
		}
		// The jump: at most the lease beyond the last seq taken, that is
		// the lease plus what was lost.
		if after > max(last, pub)+lease+slack {
			t.Errorf("%s: numbering continues after %d, %d above the last taken: more than the lease (%d)", s.key, after, after-last, lease)
		}
	}
	if mode == "connected" {
		if n := recordsInLog(t, dir); n > 100 {
			t.Errorf("connected with a prompt broker, %d records were written", n)
		}
		return
	}
	lost := killedAt.Sub(time.Unix(0, last.Time))
	t.Logf("outage: recovered %d records, the child reported %d committed; lost the last %v", last.ID, committed, lost)
	if last.ID < committed {
		t.Fatalf("recovered %d records, but %d were committed", last.ID, committed)
	}
	// Records are written once SpillAfter old; allow for the commit's
	// fdatasync and a busy machine.
	if lost > DefaultSpillAfter+time.Second {
		t.Fatalf("lost the last %v of readings; SpillAfter is %v", lost, DefaultSpillAfter)
	}
}
