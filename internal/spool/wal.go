package spool

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The log is a directory of segment files, buffer-<n>.log, n counting up.
// A segment is the magic string, then frames (frame.go). Frames are only
// ever appended, each with one write and one fdatasync; a segment whose
// records are all gone is deleted whole. Every segment begins with a
// checkpoint frame that repeats the state and every lease, so that deleting
// older segments never loses them. A segment is created under a temporary
// name and renamed once its checkpoint is on disk: a segment under its
// final name always starts well.
const (
	segPrefix = "buffer-"
	segSuffix = ".log"
	segTemp   = ".tmp"
	segMagic  = "GWSPOOL1"
	// segTarget is the size past which the next commit starts a new
	// segment; it is also about the smallest amount of disk freed at once.
	segTarget = 4 << 20
)

type segment struct {
	num  uint64
	path string
	f    *os.File
	size int64 // of the valid frames: where the next one goes
}

// wal is the open log. Only the flusher writes it; reads (of frames below
// what the flusher writes) may come from any goroutine under Disk.mu.
type wal struct {
	dir      string
	segs     []*segment // oldest first; the last is the one appended to
	openFile func(name string, flag int, perm os.FileMode) (*os.File, error)
	syncDir  func() error
	failHook func() error // tests: fails a write when it returns an error
}

func segName(num uint64) string { return fmt.Sprintf("%s%08d%s", segPrefix, num, segSuffix) }

// listSegments returns the numbers of the segments in dir, ascending, and
// removes segments left under their temporary name by a crash.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var nums []uint64
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, segPrefix) && strings.HasSuffix(name, segSuffix+segTemp) {
			_ = os.Remove(filepath.Join(dir, name)) // a roll that did not finish
			continue
		}
		mid, ok := strings.CutPrefix(name, segPrefix)
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, segSuffix); !ok {
			continue
		}
		n, err := strconv.ParseUint(mid, 10, 64)
		if err != nil || n == 0 {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

// frameAt is one valid frame found by scanning a segment.
type frameAt struct {
	off   int64
	frame []byte // header and body
}

// scanSegment reads every frame of a segment file. It stops at the first
// frame that is cut short or fails its checksum and reports where: bad is
// the offset (-1 when the segment is whole) and why.
func scanSegment(f *os.File, each func(frameAt) error) (bad int64, why error, err error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return -1, nil, err
	}
	r := bufio.NewReaderSize(f, 64<<10)
	magic := make([]byte, len(segMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != segMagic {
		return 0, fmt.Errorf("segment does not start with %q", segMagic), nil
	}
	off := int64(len(segMagic))
	hdr := make([]byte, frameHeader)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			if err == io.EOF {
				return -1, nil, nil
			}
			return off, errShortFrame, nil
		}
		n, err := frameLen(hdr)
		if err != nil {
			return off, err, nil
		}
		frame := make([]byte, frameHeader+n)
		copy(frame, hdr)
		if _, err := io.ReadFull(r, frame[frameHeader:]); err != nil {
			return off, errShortFrame, nil
		}
		if err := checkFrame(frame); err != nil {
			return off, err, nil
		}
		if err := each(frameAt{off: off, frame: frame}); err != nil {
			return -1, nil, err
		}
		off += int64(len(frame))
	}
}

func (w *wal) active() *segment { return w.segs[len(w.segs)-1] }

// append writes frames at the end of the active segment and makes them
// durable. A failed write is cut off again, so that a later append does not
// leave garbage between frames.
func (w *wal) append(frames ...[]byte) error {
	if w.failHook != nil {
		if err := w.failHook(); err != nil {
			return err
		}
	}
	s := w.active()
	off := s.size
	for _, fr := range frames {
		if _, err := s.f.WriteAt(fr, off); err != nil {
			_ = s.f.Truncate(s.size)
			return s.err("write", err)
		}
		off += int64(len(fr))
	}
	if err := fdatasync(s.f); err != nil {
		_ = s.f.Truncate(s.size)
		return s.err("fdatasync", err)
	}
	s.size = off
	return nil
}

// err names the segment by its path (its file may have been opened under
// the temporary name).
func (s *segment) err(op string, err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &os.PathError{Op: op, Path: s.path, Err: err}
}

// roll starts segment number after the active one (or the first, on an
// empty log) with the checkpoint frame.
func (w *wal) roll(checkpoint []byte) error {
	num := uint64(1)
	if len(w.segs) > 0 {
		num = w.active().num + 1
	}
	final := filepath.Join(w.dir, segName(num))
	tmp := final + segTemp
	f, err := w.openFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	data := append([]byte(segMagic), checkpoint...)
	if _, err = f.WriteAt(data, 0); err == nil {
		err = fdatasync(f)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = w.syncDir()
	}
	if err != nil {
		f.Close()
		_ = os.Remove(tmp)
		return err
	}
	w.segs = append(w.segs, &segment{num: num, path: final, f: f, size: int64(len(data))})
	return nil
}

// readFrame reads the frame of n bytes at off in s and checks it.
func (w *wal) readFrame(s *segment, off int64, n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := s.f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("reading %s at %d: %w", s.path, off, err)
	}
	if err := checkFrame(b); err != nil {
		return nil, fmt.Errorf("%s at %d: %w", s.path, off, err)
	}
	return b, nil
}

// drop deletes the oldest segment, which must not be the active one.
func (w *wal) drop() error {
	s := w.segs[0]
	w.segs = w.segs[1:]
	s.f.Close()
	return os.Remove(s.path)
}

func (w *wal) close() error {
	var errs []error
	for _, s := range w.segs {
		if err := s.f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	w.segs = nil
	return errors.Join(errs...)
}

// syncDir makes the names in dir durable (a segment created or renamed).
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
