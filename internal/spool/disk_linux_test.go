package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fileTrap captures the file bbolt opens so that a test can make its
// writes fail: a full disk cannot be produced safely in a unit test, so
// the descriptor is replaced by a read-only one of the same file, and
// every write then fails while reads go on working.
type fileTrap struct {
	mu sync.Mutex
	f  *os.File
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
	ro, err := os.Open(ft.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := syscall.Dup3(int(ro.Fd()), int(ft.f.Fd()), syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
}

// TestDiskWriteFailureFallsBack: when a commit fails the spool keeps every
// record (committed, acked out of order, pending) in memory, reports it
// once and goes on working.
func TestDiskWriteFailureFallsBack(t *testing.T) {
	var trap fileTrap
	var logs logBuffer
	diskErrs := make(chan error, 10)
	d := openTestDisk(t, Options{
		SyncInterval: 5 * time.Millisecond,
		Logger:       logs.logger(),
		OnDiskError:  func(err error) { diskErrs <- err },
		openFile:     trap.open,
	})
	var want []Record
	for i := 1; i <= 100; i++ {
		r := rec(i)
		d.Append(r)
		want = append(want, *r)
	}
	d.Ack(1) // never written
	waitFor(t, "the commit", func() bool { return committedNext(d) == 101 })
	for id := uint64(3); id <= 9; id += 2 {
		d.Ack(id)
	}
	waitFor(t, "the deletes", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.acked) == 0
	})
	trap.failWrites(t)
	d.Ack(20) // to be deleted by the commit that fails
	d.Ack(22)
	for i := 101; i <= 150; i++ {
		r := rec(i)
		d.Append(r)
		want = append(want, *r)
	}
	waitFor(t, "the fall back to memory", func() bool { return !d.Durable() })

	if err := <-diskErrs; !strings.Contains(err.Error(), "bad file descriptor") {
		t.Errorf("OnDiskError(%v)", err)
	}
	if l := logs.String(); !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, "bad file descriptor") {
		t.Errorf("log: %s", l)
	}
	for _, id := range []int{1, 3, 5, 7, 9, 20, 22} {
		want[id-1].ID = 0 // acked
	}
	want = deleteAcked(want)
	if got := d.Peek(0, make([]Record, 0, 200)); !sameRecords(got, want) {
		t.Fatalf("after the fall back: %d records %v\nwant %d", len(got), got, len(want))
	}
	if d.Len() != 143 || d.Bytes() != sizeOf(want) {
		t.Fatalf("len %d bytes %d", d.Len(), d.Bytes())
	}
	r := rec(151)
	d.Append(r)
	if r.ID != 151 || !d.Ack(2) || d.Ack(3) || d.Seqs()["s/q"] != 151 {
		t.Fatalf("memory spool: ID %d seqs %v", r.ID, d.Seqs())
	}
	select {
	case err := <-diskErrs:
		t.Fatalf("second OnDiskError(%v)", err)
	default:
	}
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

// TestDiskRotAtRunTime damages a committed record in the file under a
// running spool: Peek must not crash; the spool falls back to memory and
// loses only the damaged record.
func TestDiskRotAtRunTime(t *testing.T) {
	diskErrs := make(chan error, 10)
	d := openTestDisk(t, Options{OnDiskError: func(err error) { diskErrs <- err }})
	for i := 1; i <= 20; i++ {
		d.Append(&Record{Topic: "t", Payload: []byte(fmt.Sprintf("reading-%03d", i))})
	}
	commitNow(t, d)
	path := filepath.Join(d.dir, dbFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, []byte("reading-007"))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil || at < 0 {
		t.Fatal(at, err)
	}
	_, err = f.WriteAt([]byte("X"), int64(at)) // the map is shared: bbolt sees it
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(peekIDs(d, 0, 30)); got != "[1 2 3 4 5 6 8 9 10 11 12 13 14 15 16 17 18 19 20]" {
		t.Fatalf("peek = %s", got)
	}
	if d.Durable() || len(diskErrs) != 1 || d.Len() != 19 {
		t.Fatalf("durable %v, %d disk errors, len %d", d.Durable(), len(diskErrs), d.Len())
	}
}

func sizeOf(recs []Record) (n int64) {
	for i := range recs {
		n += recs[i].Size()
	}
	return n
}
