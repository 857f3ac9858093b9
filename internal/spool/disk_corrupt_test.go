package spool

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDiskCorruptAtOpen: a log that cannot be read is moved aside, the
// move is logged and reported, and a new empty log works.
func TestDiskCorruptAtOpen(t *testing.T) {
	seg1 := segName(1)
	tests := []struct {
		name  string
		file  string // the file moved aside
		make  func(t *testing.T, dir string)
		moved int
	}{
		{"garbage", seg1, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, seg1), randomBytes(64<<10))
		}, 1},
		{"too short", seg1, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, seg1), []byte("GW"))
		}, 1},
		{"damage in an older segment", seg1, func(t *testing.T, dir string) {
			writeLog(t, dir, 3000, 2)
			path := filepath.Join(dir, seg1)
			data, _ := os.ReadFile(path)
			copy(data[len(data)/2:], bytes.Repeat([]byte{0xa5}, 512))
			writeFile(t, path, data)
		}, 3}, // the last one holds the clean close
		{"a frame that does not decode", seg1, func(t *testing.T, dir string) {
			var w frameWriter
			w.reset()
			w.raw = append(w.raw, 'X')
			writeFile(t, filepath.Join(dir, seg1), append([]byte(segMagic), w.finish()...))
		}, 1},
		{"the bbolt store of an earlier gatewayd", legacyFile, func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, legacyFile), randomBytes(16<<10))
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.make(t, dir)
			path := filepath.Join(dir, tt.file)
			before, _ := os.ReadFile(path)
			var logs logBuffer
			var moved []string
			start := time.Now().UTC().Truncate(time.Second)
			d := openTestDisk(t, Options{Dir: dir, Logger: logs.logger(), OnCorrupt: func(p string) { moved = append(moved, p) }})
			movedName := regexp.MustCompile("/" + regexp.QuoteMeta(tt.file) + `\.corrupt-\d{8}T\d{6}Z$`)
			if len(moved) != 1 || !movedName.MatchString(moved[0]) {
				t.Fatalf("OnCorrupt got %q", moved)
			}
			stamp, err := time.Parse("20060102T150405Z", moved[0][strings.LastIndex(moved[0], "-")+1:])
			if err != nil || stamp.Before(start) || stamp.After(time.Now()) {
				t.Fatalf("moved to %s at %v: %v", moved[0], start, err)
			}
			if after, err := os.ReadFile(moved[0]); err != nil || !bytes.Equal(after, before) {
				t.Fatalf("the moved file is not the corrupt store: %v", err)
			}
			if all, _ := filepath.Glob(filepath.Join(dir, "*.corrupt-*")); len(all) != tt.moved {
				t.Fatalf("moved aside: %v", all)
			}
			if l := logs.String(); !strings.Contains(l, `"level":"ERROR"`) || !strings.Contains(l, `"err":`) {
				t.Fatalf("log: %s", l)
			}
			t.Logf("logged: %s", logs.String())
			if d.Len() != 0 {
				t.Fatalf("len %d", d.Len())
			}
			d.Append(rec(1))
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			d = openTestDisk(t, Options{Dir: dir, OnCorrupt: func(p string) { t.Errorf("new store corrupt too") }})
			wantPeek(t, d, 0, 5, "[1]")
		})
	}
}

// TestDiskTornTail: a last commit that a crash cut short is cut off; the
// commits before it are kept, and the log takes new ones after it.
func TestDiskTornTail(t *testing.T) {
	for _, cut := range []int{1, frameHeader, 30} {
		dir := t.TempDir()
		d := openTestDisk(t, Options{Dir: dir})
		for i := 1; i <= 10; i++ {
			d.Append(rec(i))
		}
		commitNow(t, d)
		seg := d.w.active()
		good := seg.size
		for i := 11; i <= 20; i++ {
			d.Append(rec(i))
		}
		commitNow(t, d)
		torn := copyStore(t, d)
		path := filepath.Join(torn, filepath.Base(seg.path))
		if err := os.Truncate(path, good+int64(cut)); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		d2 := openTestDisk(t, Options{Dir: torn, Logger: logs.logger(), OnCorrupt: func(string) { t.Error("a torn tail is not corruption") }})
		if !strings.Contains(logs.String(), "cut off") || d2.Len() != 10 {
			t.Fatalf("cut %d: len %d, log %s", cut, d2.Len(), logs.String())
		}
		d2.Append(rec(21))
		if err := d2.Close(); err != nil {
			t.Fatal(err)
		}
		d3 := openTestDisk(t, Options{Dir: torn})
		wantPeek(t, d3, 0, 20, "[1 2 3 4 5 6 7 8 9 10 11]")
	}
}

func randomBytes(n int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeLog writes n records through a spool into at least segs segments,
// and closes it.
func writeLog(t *testing.T, dir string, n, segs int) {
	t.Helper()
	d := openTestDisk(t, Options{Dir: dir})
	payload := bytes.Repeat([]byte{'p'}, 100)
	for i := 1; i <= n; i++ {
		d.Append(&Record{Topic: "t", Payload: payload, Time: int64(i)})
		if i%(n/segs) == 0 {
			commitNow(t, d)
			d.mu.Lock()
			d.w.active().size = segTarget // roll at the next commit
			d.mu.Unlock()
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
