//go:build linux

package sensors

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

const (
	sigTERM = syscall.SIGTERM
	sigKILL = syscall.SIGKILL
)

// rtlChildAttrs puts the child in a process group of its own, so that
// ending the group ends whatever it started too, and has the kernel send it
// SIGKILL when gatewayd dies, even by SIGKILL, so that it never outlives the
// daemon and holds the stick. (Pdeathsig fires when the thread that started
// the child ends; Go ends threads only when a goroutine locked to one exits
// without unlocking, which gatewayd never does.)
func rtlChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// signalGroup signals the child's process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil || cmd.Process.Pid <= 0 {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
