package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const dbFile = "buffer.db"

// openDisk opens (or creates) the store in opts.Dir and starts its
// flusher. A store that cannot be read is moved aside and replaced by an
// empty one; a store locked by another process is an error.
func openDisk(opts Options) (*Disk, error) {
	log := opts.logger()
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("buffer.dir %s: %w", opts.Dir, err)
	}
	if err := probeWritable(opts.Dir); err != nil {
		return nil, fmt.Errorf("buffer.dir %s is not writable: %w", opts.Dir, err)
	}
	path := filepath.Join(opts.Dir, dbFile)
	cacheMax := max(opts.headCache, 1)
	if opts.headCache == 0 {
		cacheMax = defaultHeadCache
	}
	db, st, err := openStore(path, opts, cacheMax)
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("buffer.dir %s is in use by another gatewayd", opts.Dir)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("buffer.dir %s: %w", opts.Dir, err)
	case err != nil:
		movedTo, merr := moveAside(path)
		if merr != nil {
			return nil, fmt.Errorf("buffer.dir %s: store unreadable (%v) and not moved aside: %w", opts.Dir, err, merr)
		}
		log.Error("buffer store unreadable; moved aside, starting with an empty one",
			"dir", opts.Dir, "moved_to", movedTo, "err", err)
		if opts.OnCorrupt != nil {
			opts.OnCorrupt(movedTo)
		}
		if db, st, err = openStore(path, opts, cacheMax); err != nil {
			return nil, fmt.Errorf("buffer.dir %s: creating a new store: %w", opts.Dir, err)
		}
	}
	d := newDisk(db, st, opts, cacheMax)
	log.Info("buffer store opened", "dir", opts.Dir, "records", st.live, "bytes", st.bytes)
	if st.crashed && len(st.seqs) > 0 {
		log.Warn("the last run did not shut down cleanly; seq numbers jump ahead so that subscribers see a gap where readings may be lost",
			"skip", SeqSkipAfterCrash)
	}
	go d.run()
	return d, nil
}

func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// moveAside renames a corrupt store to buffer.db.corrupt-<UTC time>.
func moveAside(path string) (string, error) {
	base := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405Z")
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s.%d", base, i)
	}
	return to, os.Rename(path, to)
}

// storeState is what openStore learnt from the records on disk.
type storeState struct {
	crashed       bool // the last run did not close the store
	nextID, first uint64
	live          int
	bytes         int64
	seqs          map[string]uint64
	cache         []headEntry // the oldest records, cap cacheMax
	cacheEnd      uint64
}

// openStore opens the bbolt file, reads and checks all of it and creates
// the buckets. Any error but a lock timeout or a permission problem means
// the file is unusable.
func openStore(path string, opts Options, cacheMax int) (db *bolt.DB, st storeState, err error) {
	err = guard(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:      time.Second,
			FreelistType: bolt.FreelistMapType,
			OpenFile:     opts.openFile,
		})
		return err
	})
	if err != nil {
		return nil, st, err
	}
	st, err = scan(db, cacheMax)
	if err == nil {
		err = check(db)
	}
	if err == nil {
		err = guard(func() error { return db.Update(func(tx *bolt.Tx) error { return startRun(tx, &st) }) })
	}
	if err != nil {
		_ = guard(db.Close)
		return nil, st, err
	}
	return db, st, nil
}

// scan counts the records, decoding every one, and reads the meta data.
// Reading every page here, in this goroutine and under guard, also means
// that tx.Check (whose goroutine cannot be guarded) finds them readable.
func scan(db *bolt.DB, cacheMax int) (st storeState, err error) {
	st = storeState{nextID: 1, seqs: map[string]uint64{}, cache: make([]headEntry, 0, cacheMax)}
	info, err := os.Stat(db.Path())
	if err != nil {
		return st, err
	}
	err = guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			if tx.Size() > info.Size() {
				return fmt.Errorf("file is %d bytes, its pages need %d", info.Size(), tx.Size())
			}
			if v := bucketGet(tx, bucketMeta, keyNextID); v != nil {
				if len(v) != 8 {
					return fmt.Errorf("next ID %x malformed", v)
				}
				st.nextID = max(st.nextID, binary.BigEndian.Uint64(v))
			}
			st.crashed = bucketGet(tx, bucketMeta, keyRunning) != nil
			if err := scanSeqs(tx, st.seqs); err != nil {
				return err
			}
			return scanRecords(tx, &st)
		})
	})
	if st.cacheEnd == 0 {
		st.cacheEnd = st.nextID
	}
	return st, err
}

func bucketGet(tx *bolt.Tx, bucket, key []byte) []byte {
	if b := tx.Bucket(bucket); b != nil {
		return b.Get(key)
	}
	return nil
}

func scanSeqs(tx *bolt.Tx, seqs map[string]uint64) error {
	b := tx.Bucket(bucketSeqs)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("seq of %q malformed: %x", k, v)
		}
		seqs[string(k)] = binary.BigEndian.Uint64(v)
		return nil
	})
}

func scanRecords(tx *bolt.Tx, st *storeState) error {
	b := tx.Bucket(bucketRecords)
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		id, err := keyID(k)
		if err != nil {
			return err
		}
		rv, err := parseRecord(v)
		if err != nil {
			return fmt.Errorf("record %d: %w", id, err)
		}
		if rv.id != id {
			return fmt.Errorf("record %d stored under key %d", rv.id, id)
		}
		if st.live == 0 {
			st.first = id
		}
		st.live++
		st.bytes += rv.size()
		st.nextID = max(st.nextID, id+1)
		if len(st.cache) < cap(st.cache) {
			st.cache = append(st.cache, headEntry{id: id, time: rv.time, size: rv.size()})
		} else if st.cacheEnd == 0 {
			st.cacheEnd = id
		}
	}
	return nil
}

// check runs bbolt's consistency check; it reports the first problem.
func check(db *bolt.DB) error {
	return guard(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var first error
			for err := range tx.Check() {
				if first == nil {
					first = err
				}
			}
			return first
		})
	})
}

// startRun creates the buckets and marks the store as in use, in the one
// transaction that opening commits. After a crash it also moves every seq
// ahead by SeqSkipAfterCrash, on disk too, so that a second crash before
// the next commit cannot reuse the same numbers.
func startRun(tx *bolt.Tx, st *storeState) error {
	if err := createBuckets(tx); err != nil {
		return err
	}
	if st.crashed {
		sb := tx.Bucket(bucketSeqs)
		for k, v := range st.seqs {
			st.seqs[k] = v + SeqSkipAfterCrash
			if err := sb.Put([]byte(k), binary.BigEndian.AppendUint64(nil, st.seqs[k])); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketMeta).Put(keyRunning, []byte{1})
}

func createBuckets(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketRecords, bucketMeta, bucketSeqs} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("creating bucket %s: %w", name, err)
		}
	}
	return nil
}

// endRun marks a clean close: the seqs on disk are exact again.
func endRun(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyRunning) }

// newDisk builds the spool from what openStore found.
func newDisk(db *bolt.DB, st storeState, opts Options, cacheMax int) *Disk {
	interval := opts.SyncInterval
	if interval <= 0 {
		interval = defaultSyncInterval
	}
	head := st.nextID
	if st.live > 0 {
		head = st.first
	}
	return &Disk{
		nextID:      st.nextID,
		head:        head,
		diskNext:    st.nextID,
		live:        st.live,
		bytes:       st.bytes,
		seqs:        st.seqs,
		dirty:       map[string]uint64{},
		acked:       map[uint64]struct{}{},
		diskLow:     head,
		cache:       st.cache,
		cacheBuf:    st.cache[:cap(st.cache)],
		cacheEnd:    st.cacheEnd,
		db:          db,
		dir:         opts.Dir,
		log:         opts.logger(),
		onDiskError: opts.OnDiskError,
		maxMsgs:     opts.MaxMessages,
		maxBytes:    opts.MaxBytes,
		interval:    interval,
		cacheMax:    cacheMax,
		notify:      make(chan struct{}, 1),
		kick:        make(chan struct{}, 1),
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
		fl:          flusherBufs{seqs: map[string]uint64{}},
	}
}
