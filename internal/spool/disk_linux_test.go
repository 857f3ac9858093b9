package spool

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// fileTrap captures the last segment file opened so that a test can make
// its writes fail: a full disk cannot be produced safely in a unit test,
// so the descriptor is replaced by a read-only one of the same file, and
// every write then fails while reads go on working.
type fileTrap struct {
	mu    sync.Mutex
	f     *os.File
	saved int // a duplicate of the writable descriptor
}

func (ft *fileTrap) open(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag, perm)
	ft.mu.Lock()
	ft.f = f
	ft.mu.Unlock()
	return f, err
}

func (ft *fileTrap) failWrites(t *testing.T) {
	t.Helper()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	ro, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", ft.f.Fd())) // the file may have been renamed
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ft.saved, err = syscall.Dup(int(ft.f.Fd())); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Dup3(int(ro.Fd()), int(ft.f.Fd()), syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
}

// heal makes writes work again.
func (ft *fileTrap) heal(t *testing.T) {
	t.Helper()
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if err := syscall.Dup3(ft.saved, int(ft.f.Fd()), syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	syscall.Close(ft.saved)
}

// TestDiskWriteFailureFallsBack: when the disk takes no more writes, the
// spool keeps every record (committed, acked out of order, in memory),
// reports the failure of the records and then of the leases, and goes on
// working: readings keep flowing, ungated.
func TestDiskWriteFailureFallsBack(t *testing.T) {
	var trap fileTrap
	var logs logBuffer
	diskErrs := make(chan error, 10)
	d := openTestDisk(t, Options{
		Logger:      logs.logger(),
		OnDiskError: func(err error) { diskErrs <- err },
		openFile:    trap.open,
	})
	var want []Record
	for i := 1; i <= 100; i++ {
		r := rec(i)
		d.Append(r)
		want = append(want, *r)
	}
	d.Ack(1) // never written
	commitNow(t, d)
	for id := uint64(3); id <= 9; id += 2 {
		d.Ack(id)
	}
	commitNow(t, d) // the state: 3, 5, 7 and 9 are gone
	trap.failWrites(t)
	d.Ack(20)
	d.Ack(22)
	for i := 101; i <= 150; i++ {
		r := rec(i)
		d.Append(r)
		want = append(want, *r)
	}
	if err := d.flush(all); err == nil || d.Durable() {
		t.Fatalf("commit of the records: %v, durable %v", err, d.Durable())
	}
	// A new series needs a lease: that commit fails too, and its reading
	// is published without one.
	r := &Record{Topic: "t", Payload: []byte("x"), QoS: 1, Time: 150, SeqKey: "new/q", Seq: 1}
	d.Append(r)
	want = append(want, *r)
	waitFor(t, "both failures", func() bool { return len(diskErrs) == 2 })
	for range 2 {
		if err := <-diskErrs; !strings.Contains(err.Error(), "bad file descriptor") {
			t.Errorf("OnDiskError(%v)", err)
		}
	}
	l := logs.String()
	for _, msg := range []string{"buffer disk failed; keeping new readings in memory", "cannot take the seq leases either"} {
		if !strings.Contains(l, msg) {
			t.Errorf("log has no %q: %s", msg, l)
		}
	}
	for _, id := range []int{1, 3, 5, 7, 9, 20, 22} {
		want[id-1].ID = 0 // acked
	}
	want = deleteAcked(want)
	if got := d.Peek(0, make([]Record, 0, 200)); !sameRecords(got, want) {
		t.Fatalf("after the fall back: %d records %v\nwant %d", len(got), got, len(want))
	}
	if d.Len() != 144 || d.Bytes() != sizeOf(want) {
		t.Fatalf("len %d bytes %d", d.Len(), d.Bytes())
	}
	r = rec(152)
	d.Append(r)
	if r.ID != 152 || !d.Ack(2) || d.Ack(3) || d.Seqs()["s/q"] != 152 {
		t.Fatalf("memory spool: ID %d seqs %v", r.ID, d.Seqs())
	}
	if got := d.Peek(149, make([]Record, 0, 10)); len(got) != 3 {
		t.Fatalf("peek after 149: %v", got)
	}
	select {
	case err := <-diskErrs:
		t.Fatalf("third OnDiskError(%v)", err)
	default:
	}
	trap.heal(t) // the exact seqs are written at close where the disk allows it
}

func deleteAcked(recs []Record) []Record {
	out := recs[:0]
	for _, r := range recs {
		if r.ID != 0 {
			out = append(out, r)
		}
	}
	return out
}

// TestDiskFallbackKeepsSeqs: after a commit failed and the records stay in
// memory, the leases are still written: a crash then continues above every
// seq published, and a clean close continues exactly.
func TestDiskFallbackKeepsSeqs(t *testing.T) {
	var fails atomic.Int32
	dir := t.TempDir()
	diskErrs := make(chan error, 10)
	d := openTestDisk(t, Options{Dir: dir,
		OnDiskError: func(err error) { diskErrs <- err },
		appendFail: func() error {
			if fails.Add(-1) >= 0 {
				return errors.New("injected")
			}
			return nil
		},
	})
	for i := 1; i <= 10; i++ {
		d.Append(rec(i))
	}
	commitNow(t, d)
	fails.Store(1)
	for i := 11; i <= 20; i++ {
		d.Append(rec(i))
	}
	d.flush(all) // fails, unless the flusher's lease commit took the failure
	waitFor(t, "the fall back, and the leases after it", func() bool { return !d.Durable() && maxPeekedSeq(d) == 20 })
	for i := 21; i <= 30; i++ {
		d.Append(rec(i))
	}
	settle(t, d)
	if got := maxPeekedSeq(d); got != 30 {
		t.Fatalf("published up to %d", got)
	}
	if len(diskErrs) != 1 {
		t.Fatalf("%d disk errors", len(diskErrs))
	}
	crashed := openTestDisk(t, Options{Dir: copyStore(t, d)})
	if got := crashed.Seqs()["s/q"]; got < 30 {
		t.Fatalf("after a crash that followed the fall back, seqs continue after %d: 30 was published", got)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	clean := openTestDisk(t, Options{Dir: dir})
	if got := clean.Seqs()["s/q"]; got != 30 {
		t.Fatalf("after a clean close that followed the fall back, seqs continue after %d, want 30", got)
	}
	wantPeek(t, clean, 0, 20, "[1 2 3 4 5 6 7 8 9 10]") // the others were in memory only
}

// TestDiskRotAtRunTime damages a committed frame in the file under a
// running spool: Peek must not crash; the spool stops writing records and
// loses only the damaged frame's records.
func TestDiskRotAtRunTime(t *testing.T) {
	diskErrs := make(chan error, 10)
	d := openTestDisk(t, Options{OnDiskError: func(err error) { diskErrs <- err }})
	for i := 1; i <= 40; i++ {
		d.Append(&Record{Topic: "t", Payload: []byte(fmt.Sprintf("reading-%03d", i))})
		if i == 20 || i == 40 {
			commitNow(t, d)
		}
	}
	d.mu.Lock()
	d.cache = [cacheFrames]decoded{} // as if the frame was last read long ago
	f := d.frames[0]
	d.mu.Unlock()
	if f.first != 1 || f.last != 20 {
		t.Fatalf("first frame holds %d..%d", f.first, f.last)
	}
	file, err := os.OpenFile(f.seg.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = file.WriteAt([]byte("XX"), f.off+int64(f.n)/2)
	file.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(peekIDs(d, 0, 30)); got != "[21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40]" {
		t.Fatalf("peek = %s", got)
	}
	if d.Durable() || len(diskErrs) != 1 || d.Len() != 20 {
		t.Fatalf("durable %v, %d disk errors, len %d", d.Durable(), len(diskErrs), d.Len())
	}
}

func sizeOf(recs []Record) (n int64) {
	for i := range recs {
		n += recs[i].Size()
	}
	return n
}
