package spool

import (
	"os"
	"syscall"
	"time"
)

// fdatasync makes what was written to f durable, and its size, without
// the rest of its metadata (times): one journal commit fewer than fsync.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// lockDir takes an exclusive lock on path (created if need be), waiting up
// to a second for another process to let go of it, and returns how to
// release it.
func lockDir(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(time.Second)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			if err == syscall.EWOULDBLOCK {
				return nil, errInUse
			}
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
