package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"
)

const (
	lockFile = "buffer.lock"
	// legacyFile is the bbolt store of gatewayd before the log: not read,
	// moved aside like an unreadable store.
	legacyFile = "buffer.db"
)

// openDisk opens (or creates) the log in opts.Dir and starts its flusher.
// A log that cannot be read is moved aside and replaced by an empty one; a
// directory locked by another process is an error.
func openDisk(opts Options) (*Disk, error) {
	log := opts.logger()
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("buffer.dir %s: %w", opts.Dir, err)
	}
	if err := probeWritable(opts.Dir); err != nil {
		return nil, fmt.Errorf("buffer.dir %s is not writable: %w", opts.Dir, err)
	}
	unlock, err := lockDir(filepath.Join(opts.Dir, lockFile))
	if errors.Is(err, errInUse) {
		return nil, fmt.Errorf("buffer.dir %s is in use by another gatewayd", opts.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("buffer.dir %s: locking: %w", opts.Dir, err)
	}
	corrupt := func(moved []string, cause error) {
		log.Error("buffer store unreadable; moved aside, starting with an empty one",
			"dir", opts.Dir, "moved_to", moved[0], "err", cause)
		if opts.OnCorrupt != nil {
			opts.OnCorrupt(moved[0])
		}
	}
	legacy := filepath.Join(opts.Dir, legacyFile)
	if _, err := os.Lstat(legacy); err == nil {
		to, err := moveAside(legacy)
		if err != nil {
			unlock()
			return nil, fmt.Errorf("buffer.dir %s: moving %s aside: %w", opts.Dir, legacyFile, err)
		}
		corrupt([]string{to}, fmt.Errorf("%s is not a log of this gatewayd (an earlier one kept its buffer in bbolt)", legacyFile))
	}
	w := &wal{dir: opts.Dir, openFile: opts.openFile, failHook: opts.appendFail, syncDir: func() error { return syncDir(opts.Dir) }}
	if w.openFile == nil {
		w.openFile = os.OpenFile
	}
	st, err := replayLog(w, log)
	var bad *corruptError
	if errors.As(err, &bad) {
		moved, merr := moveSegmentsAside(w)
		if merr != nil {
			unlock()
			return nil, fmt.Errorf("buffer.dir %s: store unreadable (%v) and not moved aside: %w", opts.Dir, err, merr)
		}
		corrupt(moved, err)
		st, err = replayLog(w, log)
	}
	if err != nil {
		w.close()
		unlock()
		return nil, fmt.Errorf("buffer.dir %s: %w", opts.Dir, err)
	}
	d := newDisk(w, st, opts)
	d.unlockDir = unlock
	log.Info("buffer store opened", "dir", opts.Dir, "records", d.live, "bytes", d.bytes, "segments", len(w.segs))
	if st.crashed {
		log.Warn("the last run did not shut down cleanly; seq numbers continue above their leases, so subscribers see a gap where readings may have been lost",
			"lease", d.leaseFor.String(), "series", len(st.leases))
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

// moveAside renames a corrupt file to <name>.corrupt-<UTC time>.
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

// moveSegmentsAside moves every segment of an unreadable log aside.
func moveSegmentsAside(w *wal) ([]string, error) {
	w.close()
	nums, err := listSegments(w.dir)
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, n := range nums {
		to, err := moveAside(filepath.Join(w.dir, segName(n)))
		if err != nil {
			return moved, err
		}
		moved = append(moved, to)
	}
	return moved, nil
}

var errInUse = errors.New("in use by another process")

// corruptError is a log that cannot be read: damage before its last frame.
type corruptError struct{ err error }

func (e *corruptError) Error() string { return e.err.Error() }
func (e *corruptError) Unwrap() error { return e.err }

// logState is what replaying the log found.
type logState struct {
	crashed bool // the last run did not close the log
	head    uint64
	nextID  uint64
	acked   map[uint64]struct{}
	leases  map[string]uint64
	frames  []frameRef
	live    int
	bytes   int64
}

// replayLog opens every segment and reads every frame, in order. A frame
// cut short or failing its checksum at the end of the last segment is a
// commit that a crash interrupted: it is cut off. Damage anywhere else is
// a corruptError.
func replayLog(w *wal, log *slog.Logger) (logState, error) {
	st := logState{acked: map[uint64]struct{}{}, leases: map[string]uint64{}}
	nums, err := listSegments(w.dir)
	if err != nil {
		return st, err
	}
	type idSize struct {
		id   uint64
		size int64
	}
	var recs [][]idSize // per frame in st.frames
	var lastID uint64
	closed := false
	for i, num := range nums {
		s := &segment{num: num, path: filepath.Join(w.dir, segName(num))}
		if s.f, err = w.openFile(s.path, os.O_RDWR, 0); err != nil {
			return st, err
		}
		w.segs = append(w.segs, s)
		bad, why, err := scanSegment(s.f, func(fa frameAt) error {
			c, err := decodeFrame(fa.frame[frameHeader:])
			if err != nil {
				return &corruptError{fmt.Errorf("%s at %d: %w", s.path, fa.off, err)}
			}
			if len(c.recs) > 0 {
				f := frameRef{seg: s, off: fa.off, n: len(fa.frame), first: c.recs[0].ID, last: c.recs[len(c.recs)-1].ID}
				if f.first <= lastID {
					return &corruptError{fmt.Errorf("%s at %d: record %d follows %d", s.path, fa.off, f.first, lastID)}
				}
				lastID = f.last
				ids := make([]idSize, len(c.recs))
				for j := range c.recs {
					r := &c.recs[j]
					ids[j] = idSize{r.ID, r.Size()}
					if r.SeqKey != "" && r.Seq > st.leases[r.SeqKey] {
						st.leases[r.SeqKey] = r.Seq // no seq on disk is ever given again
					}
				}
				st.frames = append(st.frames, f)
				recs = append(recs, ids)
			}
			if c.hasState {
				st.head = c.head
				clear(st.acked)
				for _, id := range c.acked {
					st.acked[id] = struct{}{}
				}
			}
			for _, l := range c.leases {
				st.leases[l.key] = l.seq
			}
			closed = c.closed
			return nil
		})
		if err != nil {
			return st, err
		}
		s.size = bad
		if bad < 0 {
			info, err := s.f.Stat()
			if err != nil {
				return st, err
			}
			s.size = info.Size()
		} else if i < len(nums)-1 || bad == 0 {
			return st, &corruptError{fmt.Errorf("%s at %d: %w", s.path, bad, why)}
		} else {
			info, _ := s.f.Stat()
			log.Warn("buffer log ends in a commit a crash interrupted; cut off", "path", s.path, "at", bad, "bytes", info.Size()-bad, "why", why)
			if err := s.f.Truncate(bad); err != nil {
				return st, err
			}
		}
	}
	st.crashed = len(nums) > 0 && !closed && len(st.leases) > 0
	st.nextID = max(1, st.head, lastID+1)
	// What is live: at or above head, and not acked.
	kept := st.frames[:0]
	for i, f := range st.frames {
		for _, r := range recs[i] {
			if _, gone := st.acked[r.id]; !gone && r.id >= st.head {
				f.live++
				f.bytes += r.size
			}
		}
		if f.live > 0 {
			kept = append(kept, f)
			st.live += f.live
			st.bytes += f.bytes
		}
	}
	st.frames = kept
	for id := range st.acked {
		if id < st.head {
			delete(st.acked, id)
		}
	}
	return st, nil
}

// newDisk builds the spool from what replayLog found.
func newDisk(w *wal, st logState, opts Options) *Disk {
	spill := opts.SpillAfter
	if spill <= 0 {
		spill = DefaultSpillAfter
	}
	leaseFor := opts.seqLease
	if leaseFor <= 0 {
		leaseFor = SeqLease
	}
	d := &Disk{
		nextID:      st.nextID,
		head:        st.head,
		memStart:    st.nextID,
		live:        st.live,
		bytes:       st.bytes,
		frames:      st.frames,
		acked:       st.acked,
		seqs:        make(map[string]uint64, len(st.leases)),
		leases:      make(map[string]*lease, len(st.leases)),
		gate:        noGate,
		wakeAt:      math.MaxInt64,
		durable:     true,
		leasesOK:    true,
		w:           w,
		dir:         opts.Dir,
		log:         opts.logger(),
		onDiskError: opts.OnDiskError,
		onCommit:    opts.OnCommit,
		maxMsgs:     opts.MaxMessages,
		maxBytes:    opts.MaxBytes,
		spillAfter:  spill,
		leaseFor:    leaseFor,
		renewAhead:  time.Duration(float64(leaseFor) * float64(renewAhead) / float64(SeqLease)),
		epoch:       time.Now(),
		notify:      make(chan struct{}, 1),
		kick:        make(chan struct{}, 1),
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
	}
	for k, v := range st.leases {
		d.seqs[k] = v
		d.leases[k] = &lease{durable: v}
	}
	d.stateAt = d.epoch
	d.front()
	return d
}
