//go:build unix

package sensors

import (
	"io/fs"
	"syscall"
)

// readAttrFlags reads one attribute with plain open(2) and read(2), never
// through an os.File. An os.File registers a sysfs file with the runtime's
// poller (kernfs files support poll), and when a driver's show() returns
// EAGAIN the runtime parks the read until the file is "ready", which for
// sysfs means until the driver calls sysfs_notify: for most drivers, never.
// node_exporter and prometheus/procfs read sysfs this way for that reason.
// Here EAGAIN comes back as an error that the caller may retry within its
// deadline. flags are added to O_RDONLY|O_CLOEXEC (tests add O_NONBLOCK).
func readAttrFlags(path string, flags int) ([]byte, error) {
	var fd int
	var err error
	for {
		fd, err = syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|flags, 0)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, maxAttrSize+1)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err == syscall.EAGAIN && n > 0 {
			break // the value, then "no more for now": the value is whole
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if m <= 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}
