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

	bolt "go.etcd.io/bbolt"
)

// TestDiskCorruptAtOpen: a store that cannot be read is moved aside, the
// move is logged and reported, and a new empty store works.
func TestDiskCorruptAtOpen(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
	}{
		{"garbage", func(t *testing.T, path string) {
			writeFile(t, path, randomBytes(64<<10))
		}},
		{"too short", func(t *testing.T, path string) {
			writeFile(t, path, []byte("not a database"))
		}},
		{"truncated", func(t *testing.T, path string) {
			writeStore(t, path, 3000)
			info, _ := os.Stat(path)
			if err := os.Truncate(path, info.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"bytes overwritten", func(t *testing.T, path string) {
			writeStore(t, path, 3000)
			data, _ := os.ReadFile(path)
			copy(data[len(data)/2:], bytes.Repeat([]byte{0xa5}, 512))
			writeFile(t, path, data)
		}},
		{"bad record", func(t *testing.T, path string) {
			enc := encodeRecord(nil, rec(1))
			enc[len(enc)-6] ^= 1
			putRaw(t, path, bucketRecords, idKey(1), enc)
		}},
		{"record under the wrong key", func(t *testing.T, path string) {
			putRaw(t, path, bucketRecords, idKey(2), encodeRecord(nil, &Record{ID: 1}))
		}},
		{"bad key", func(t *testing.T, path string) {
			putRaw(t, path, bucketRecords, []byte("key"), encodeRecord(nil, &Record{ID: 1}))
		}},
		{"bad next ID", func(t *testing.T, path string) {
			putRaw(t, path, bucketMeta, keyNextID, []byte{1})
		}},
	}
	movedName := regexp.MustCompile(`/buffer\.db\.corrupt-\d{8}T\d{6}Z$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, dbFile)
			tt.make(t, path)
			before, _ := os.ReadFile(path)
			var logs logBuffer
			var moved []string
			start := time.Now().UTC().Truncate(time.Second)
			d := openTestDisk(t, Options{Dir: dir, Logger: logs.logger(), OnCorrupt: func(p string) { moved = append(moved, p) }})
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

// writeStore writes n records through a spool and closes it.
func writeStore(t *testing.T, path string, n int) {
	t.Helper()
	d := openTestDisk(t, Options{Dir: filepath.Dir(path)})
	for i := 1; i <= n; i++ {
		d.Append(&Record{Topic: "t", Payload: bytes.Repeat([]byte{'p'}, 100), Time: int64(i)})
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

// putRaw writes a bbolt file holding the spool's buckets and one raw value.
func putRaw(t *testing.T, path string, bucket, key, value []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := createBuckets(tx); err != nil {
			return err
		}
		return tx.Bucket(bucket).Put(key, value)
	})
	if err != nil {
		t.Fatal(err)
	}
}
