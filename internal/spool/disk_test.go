package spool

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// openTestDisk opens a durable spool that commits records only when the
// test says so (commitNow) or when earlyBytes of them wait; leases are
// committed as they fall due, by the flusher or by settle.
func openTestDisk(t testing.TB, opts Options) *Disk {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.MaxMessages == 0 {
		opts.MaxMessages = 1 << 30
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 1 << 40
	}
	if opts.SpillAfter == 0 {
		opts.SpillAfter = time.Hour
	}
	q, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	d := q.(*Disk)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// commitNow commits every record waiting in memory, and what is due.
func commitNow(t testing.TB, d *Disk) {
	t.Helper()
	if err := d.flush(all); err != nil || !d.Durable() {
		t.Fatalf("commit: durable %v, err %v", d.Durable(), err)
	}
}

// settle commits what is due (the leases of the seqs appended), so that
// Peek sees every record.
func settle(t testing.TB, d *Disk) {
	t.Helper()
	if err := d.flush(due); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// committedNext is the ID below which everything went through a commit.
func committedNext(d *Disk) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.memStart
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// logBuffer collects a JSON log; the flusher writes to it concurrently.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

func TestDiskReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, Options{Dir: dir})
	var sent []Record
	for i := 1; i <= 10; i++ {
		r := rec(i)
		d.Append(r)
		sent = append(sent, *r)
	}
	d.Append(&Record{Topic: "other", SeqKey: "a/b", Seq: 99})
	d.Ack(11)
	commitNow(t, d)
	d.Ack(3) // committed
	d.Append(rec(12))
	d.Ack(5)  // committed, ack pending
	d.Ack(12) // never reaches the disk
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openTestDisk(t, Options{Dir: dir})
	got := d.Peek(0, make([]Record, 0, 20))
	want := []Record{sent[0], sent[1], sent[3], sent[5], sent[6], sent[7], sent[8], sent[9]}
	if !sameRecords(got, want) {
		t.Fatalf("after reopening: %v\nwant %v", got, want)
	}
	if d.Len() != 8 || d.Bytes() != 7*rec(1).Size()+rec(10).Size() {
		t.Fatalf("len %d bytes %d", d.Len(), d.Bytes())
	}
	wantOldest(t, d, 1)
	if seqs := fmt.Sprint(d.Seqs()); seqs != "map[a/b:99 s/q:12]" {
		t.Fatalf("seqs = %s", seqs)
	}
	r := rec(13)
	d.Append(r)
	if r.ID != 11 { // above every ID on disk
		t.Fatalf("next ID %d, want 11", r.ID)
	}
}

func TestDiskAckedBeforeCommitIsNeverWritten(t *testing.T) {
	d := openTestDisk(t, Options{})
	for i := 1; i <= 5; i++ {
		d.Append(rec(i))
		d.Ack(uint64(i))
	}
	commitNow(t, d)
	if n := recordsInLog(t, d.dir); n != 0 {
		t.Fatalf("%d records on disk, want 0", n)
	}
}

// recordsInLog counts the records written to the log in dir.
func recordsInLog(t *testing.T, dir string) int {
	t.Helper()
	nums, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, num := range nums {
		f, err := os.Open(filepath.Join(dir, segName(num)))
		if err != nil {
			t.Fatal(err)
		}
		_, why, err := scanSegment(f, func(fa frameAt) error {
			c, err := decodeFrame(fa.frame[frameHeader:])
			n += len(c.recs)
			return err
		})
		f.Close()
		if why != nil || err != nil {
			t.Fatalf("%s: %v %v", f.Name(), why, err)
		}
	}
	return n
}

func TestDiskCommitsEarlyWhenManyPending(t *testing.T) {
	d := openTestDisk(t, Options{}) // an hour before records are due
	payload := bytes.Repeat([]byte("p"), 1000)
	for i := 1; i <= earlyBytes/1000; i++ {
		d.Append(&Record{Topic: "t", Payload: payload})
	}
	waitFor(t, "a commit", func() bool { return committedNext(d) > 1 })
}

// TestDiskCrashCopy copies the log of a spool that was never closed, as a
// crash leaves it: what was committed survives, and no seq that Peek gave
// out is given again.
func TestDiskCrashCopy(t *testing.T) {
	t.Run("records due", func(t *testing.T) {
		d := openTestDisk(t, Options{SpillAfter: 20 * time.Millisecond})
		for i := 1; i <= 100; i++ {
			d.Append(rec(i))
		}
		waitFor(t, "the flusher to commit", func() bool { return committedNext(d) == 101 })
		published := maxPeekedSeq(d)
		crashed := openTestDisk(t, Options{Dir: copyStore(t, d)})
		wantPeek(t, crashed, 95, 10, "[96 97 98 99 100]")
		if crashed.Len() != 100 || crashed.Seqs()["s/q"] < 100 || published != 100 {
			t.Fatalf("len %d seqs %v, published up to %d", crashed.Len(), crashed.Seqs(), published)
		}
	})
	t.Run("waiting in memory lost", func(t *testing.T) {
		d := openTestDisk(t, Options{})
		for i := 1; i <= 100; i++ {
			d.Append(rec(i))
		}
		commitNow(t, d)
		for i := 101; i <= 150; i++ {
			d.Append(rec(i))
		}
		settle(t, d)
		d.Ack(10) // the ack is lost too: record 10 will be sent again
		published := maxPeekedSeq(d)
		crashed := openTestDisk(t, Options{Dir: copyStore(t, d)})
		// Seqs up to 150 may have been published: the next must not reuse them.
		if crashed.Len() != 100 || crashed.Seqs()["s/q"] < published || published != 150 {
			t.Fatalf("len %d seqs %v, published up to %d", crashed.Len(), crashed.Seqs(), published)
		}
		r := rec(101)
		crashed.Append(r)
		if r.ID != 101 {
			t.Fatalf("next ID %d", r.ID)
		}
	})
}

// maxPeekedSeq is the largest seq Peek gives out: what may be published.
func maxPeekedSeq(q Queue) uint64 {
	var seq, after uint64
	for buf := make([]Record, 0, 64); ; {
		recs := q.Peek(after, buf)
		if len(recs) == 0 {
			return seq
		}
		for _, r := range recs {
			seq, after = max(seq, r.Seq), r.ID
		}
	}
}

// copyStore copies the log of d to a new directory, as a crash leaves it.
func copyStore(t *testing.T, d *Disk) string {
	t.Helper()
	dir := t.TempDir()
	nums, err := listSegments(d.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nums {
		data, err := os.ReadFile(filepath.Join(d.dir, segName(n)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(n)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDiskLocked(t *testing.T) {
	dir := t.TempDir()
	openTestDisk(t, Options{Dir: dir})
	_, err := Open(Options{Dir: dir, MaxMessages: 10, MaxBytes: 1000})
	want := fmt.Sprintf("buffer.dir %s is in use by another gatewayd", dir)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

func TestDiskUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(file, "buffer")}
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, ro)
	}
	for _, dir := range dirs {
		_, err := Open(Options{Dir: dir, MaxMessages: 10, MaxBytes: 1000})
		if err == nil || !strings.Contains(err.Error(), "buffer.dir "+dir) {
			t.Errorf("%s: err = %v", dir, err)
		}
	}
}

// TestDiskMemoryBounded appends far more than the head cache holds: the
// heap must not grow with what is stored, and reads still work.
func TestDiskMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200k records")
	}
	const n = 200_000
	d := openTestDisk(t, Options{})
	heapBefore := heapInuse()
	payload := bytes.Repeat([]byte("x"), 150)
	var stored int64
	for i := 1; i <= n; i++ {
		r := &Record{Topic: "plant/boiler/temp", Payload: payload, Time: int64(i), SeqKey: "boiler/temp", Seq: uint64(i)}
		d.Append(r)
		stored += r.Size()
	}
	commitNow(t, d)
	grown := heapInuse() - heapBefore
	t.Logf("stored %d MiB; heap grew %d KiB", stored>>20, grown>>10)
	if grown > stored/20 {
		t.Errorf("heap grew %d bytes for %d bytes stored", grown, stored)
	}
	if d.Len() != n || d.Bytes() != stored {
		t.Fatalf("len %d bytes %d, want %d %d", d.Len(), d.Bytes(), n, stored)
	}
	wantPeek(t, d, 0, 3, "[1 2 3]")
	wantPeek(t, d, n-2, 3, "[199999 200000]")
	for id := uint64(1); id <= 1000; id++ {
		d.Ack(id)
	}
	wantOldest(t, d, 1001)
	wantPeek(t, d, 0, 1, "[1001]")
}

func heapInuse() int64 {
	runtime.GC()
	runtime.GC() // sync.Pools (flate keeps state in some) empty on the second
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestDiskConcurrent has a producer, a publisher acking out of order and
// a metrics reader on one spool while the flusher commits every 2ms.
func TestDiskConcurrent(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, Options{Dir: dir, SpillAfter: 2 * time.Millisecond, MaxMessages: 3000})
	const n = 20_000
	appended := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(appended)
		for i := 1; i <= n; i++ {
			d.Append(rec(i))
		}
	})
	wg.Go(func() { // the publisher
		var after uint64
		buf := make([]Record, 0, 64)
		for {
			recs := d.Peek(after, buf)
			if len(recs) == 0 {
				select {
				case <-appended:
					// The last records may wait for their lease.
					if d.Len() == 0 {
						return
					}
					select {
					case <-d.Notify():
					case <-time.After(time.Millisecond):
					}
				case <-d.Notify():
				}
				continue
			}
			for i := len(recs) - 1; i >= 0; i-- {
				d.Ack(recs[i].ID)
			}
			for _, r := range recs {
				if r.ID <= after {
					t.Errorf("peek after %d returned %d", after, r.ID)
					return
				}
				after = r.ID
			}
		}
	})
	stop := make(chan struct{})
	wg.Go(func() { // metrics
		for {
			select {
			case <-stop:
				return
			default:
				d.Len()
				d.Bytes()
				d.Oldest()
				d.Seqs()
			}
		}
	})
	<-appended
	waitFor(t, "the publisher to ack everything", func() bool { return d.Len() == 0 })
	close(stop)
	wg.Wait()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if d := openTestDisk(t, Options{Dir: dir}); d.Len() != 0 || d.Seqs()["s/q"] != n {
		t.Fatalf("after reopening: len %d seqs %v", d.Len(), d.Seqs())
	}
}

// TestDiskSeqAfterCleanCloseAndCrashes: a clean close keeps seqs exact; a
// crash continues above the leases, and a second crash right after the
// restart, before any reading, adds nothing to the jump.
func TestDiskSeqAfterCleanCloseAndCrashes(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, Options{Dir: dir})
	for i := 1; i <= 5; i++ {
		d.Append(rec(i))
	}
	d.Append(&Record{Topic: "t", SeqKey: "idle/q", Seq: 7}) // a series not read in the next run
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	clean := openTestDisk(t, Options{Dir: dir})
	if got := clean.Seqs()["s/q"]; got != 5 {
		t.Fatalf("after a clean close seq %d, want 5", got)
	}
	for i := 6; i <= 8; i++ {
		clean.Append(rec(i))
	}
	settle(t, clean)
	first := openTestDisk(t, Options{Dir: copyStore(t, clean)}) // clean crashed after 3 readings
	lease := first.Seqs()["s/q"]
	if lease < 8 || lease > 8+3 { // the rate is not measured yet: the lease grows with what came
		t.Fatalf("after a crash seq %d, want 8 to 11", lease)
	}
	second := openTestDisk(t, Options{Dir: copyStore(t, first)}) // and again, before any reading
	if got := second.Seqs()["s/q"]; got != lease {
		t.Fatalf("after a second crash seq %d, want %d", got, lease)
	}
	if got := second.Seqs()["idle/q"]; got != 7 {
		t.Fatalf("a series with no reading since the clean close: seq %d after the crashes, want 7", got)
	}
}

// TestDiskSpillsWhatWaits: a record acknowledged within SpillAfter never
// reaches the disk; one still waiting then is written, with every other
// record waiting at that moment.
func TestDiskSpillsWhatWaits(t *testing.T) {
	const spill = 100 * time.Millisecond
	d := openTestDisk(t, Options{SpillAfter: spill})
	start := time.Now()
	for i := 1; i <= 10; i++ {
		r := &Record{Topic: "t", Payload: []byte("x"), QoS: 1}
		d.Append(r)
		if i%2 == 0 {
			d.Ack(r.ID) // a prompt broker
		}
	}
	waitFor(t, "the waiting records written", func() bool { return d.Written() == 5 })
	if took := time.Since(start); took < spill {
		t.Fatalf("written after %s, before SpillAfter", took)
	}
	for range 10 {
		r := &Record{Topic: "t", Payload: []byte("x"), QoS: 1}
		d.Append(r)
		d.Ack(r.ID)
	}
	time.Sleep(3 * spill)
	if n := d.Written(); n != 5 {
		t.Fatalf("%d records written, want the 5 that waited", n)
	}
	if n := recordsInLog(t, d.dir); n != 5 {
		t.Fatalf("%d records in the log, want 5", n)
	}
}

// TestDiskGateWaitsForTheLease: Peek gives out no record whose seq is not
// covered by a lease on disk, nor any after it; it does once the lease is
// written.
func TestDiskGateWaitsForTheLease(t *testing.T) {
	hold := make(chan struct{})
	var held atomic.Bool
	d := openTestDisk(t, Options{appendFail: func() error {
		if held.Load() {
			<-hold // a slow disk
		}
		return nil
	}})
	d.Append(&Record{Topic: "t", Payload: []byte("no seq")})
	settle(t, d)
	held.Store(true)
	d.Append(rec(1))
	d.Append(&Record{Topic: "t", Payload: []byte("behind it")})
	time.Sleep(50 * time.Millisecond) // the flusher is writing the lease now
	wantPeek(t, d, 0, 10, "[1]")      // the record before the gate only
	held.Store(false)
	close(hold)
	waitFor(t, "the lease", func() bool { return len(peekIDs(d, 0, 10)) == 3 })
	if got := d.Seqs()["s/q"]; got != 1 {
		t.Fatalf("seqs %d", got)
	}
}
