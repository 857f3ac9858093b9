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
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTestDisk opens a durable spool that commits only when the test says
// so (commitNow) or when flushOps operations have gathered.
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
	if opts.SyncInterval == 0 {
		opts.SyncInterval = time.Hour
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

func commitNow(t testing.TB, d *Disk) {
	t.Helper()
	if durable, err := d.flush(); !durable || err != nil {
		t.Fatalf("commit: durable %v, err %v", durable, err)
	}
}

// committedNext is the ID below which everything went through a commit.
func committedNext(d *Disk) uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.diskNext
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
	if r.ID != 13 {
		t.Fatalf("next ID %d, want 13", r.ID)
	}
}

func TestDiskAckedBeforeCommitIsNeverWritten(t *testing.T) {
	d := openTestDisk(t, Options{})
	for i := 1; i <= 5; i++ {
		d.Append(rec(i))
		d.Ack(uint64(i))
	}
	commitNow(t, d)
	if n := keysOnDisk(t, d); n != 0 {
		t.Fatalf("%d records on disk, want 0", n)
	}
}

func keysOnDisk(t *testing.T, d *Disk) int {
	t.Helper()
	n := 0
	err := d.view(func(b *bolt.Bucket) error {
		n = b.Stats().KeyN
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDiskCommitsEarlyWhenManyPending(t *testing.T) {
	d := openTestDisk(t, Options{}) // an hour between timed commits
	for i := 1; i <= flushOps; i++ {
		d.Append(rec(i))
	}
	waitFor(t, "a commit", func() bool { return committedNext(d) > 1 })
}

// TestDiskCrashCopy copies the file of a spool that was never closed, as
// a crash leaves it: what the flusher committed survives.
func TestDiskCrashCopy(t *testing.T) {
	t.Run("timed commit", func(t *testing.T) {
		d := openTestDisk(t, Options{SyncInterval: 20 * time.Millisecond})
		for i := 1; i <= 100; i++ {
			d.Append(rec(i))
		}
		waitFor(t, "the flusher to commit", func() bool { return committedNext(d) == 101 })
		crashed := openTestDisk(t, Options{Dir: copyStore(t, d)})
		wantPeek(t, crashed, 95, 10, "[96 97 98 99 100]")
		if crashed.Len() != 100 || crashed.Seqs()["s/q"] != 100+SeqSkipAfterCrash {
			t.Fatalf("len %d seqs %v", crashed.Len(), crashed.Seqs())
		}
	})
	t.Run("pending lost", func(t *testing.T) {
		d := openTestDisk(t, Options{})
		for i := 1; i <= 100; i++ {
			d.Append(rec(i))
		}
		commitNow(t, d)
		for i := 101; i <= 150; i++ {
			d.Append(rec(i))
		}
		d.Ack(10) // the ack is lost too: record 10 will be sent again
		crashed := openTestDisk(t, Options{Dir: copyStore(t, d)})
		// Seqs 101..150 may have been published: the next must not reuse them.
		if crashed.Len() != 100 || crashed.Seqs()["s/q"] != 100+SeqSkipAfterCrash {
			t.Fatalf("len %d seqs %v", crashed.Len(), crashed.Seqs())
		}
		r := rec(101)
		crashed.Append(r)
		if r.ID != 101 {
			t.Fatalf("next ID %d", r.ID)
		}
	})
}

// copyStore copies the store of d, which must not be committing, to a new
// directory.
func copyStore(t *testing.T, d *Disk) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(d.dir, dbFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, dbFile), data, 0o600); err != nil {
		t.Fatal(err)
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
	d := openTestDisk(t, Options{headCache: 8})
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
	runtime.GC() // sync.Pools (bbolt keeps pages in one) empty on the second
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// TestDiskConcurrent has a producer, a publisher acking out of order and
// a metrics reader on one spool while the flusher commits every 2ms.
func TestDiskConcurrent(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, Options{Dir: dir, SyncInterval: 2 * time.Millisecond, MaxMessages: 3000, headCache: 16})
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
					if recs = d.Peek(after, buf); len(recs) == 0 {
						return
					}
				case <-d.Notify():
					continue
				}
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
// crash makes them jump, on disk too, so that a second crash right after
// the restart cannot reuse the numbers of the first run.
func TestDiskSeqAfterCleanCloseAndCrashes(t *testing.T) {
	dir := t.TempDir()
	d := openTestDisk(t, Options{Dir: dir})
	for i := 1; i <= 5; i++ {
		d.Append(rec(i))
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	clean := openTestDisk(t, Options{Dir: dir})
	if got := clean.Seqs()["s/q"]; got != 5 {
		t.Fatalf("after a clean close seq %d, want 5", got)
	}
	first := openTestDisk(t, Options{Dir: copyStore(t, clean)}) // clean crashed right after opening
	if got := first.Seqs()["s/q"]; got != 5+SeqSkipAfterCrash {
		t.Fatalf("after a crash seq %d", got)
	}
	second := openTestDisk(t, Options{Dir: copyStore(t, first)}) // and again, before any commit
	if got := second.Seqs()["s/q"]; got != 5+2*SeqSkipAfterCrash {
		t.Fatalf("after a second crash seq %d", got)
	}
}
