//go:build unix

package sensors

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup starts the command as the leader of a new process group
// and makes ctx's end kill the whole group, not just the leader: a shell
// script's children (sleep, a hung i2cget) would otherwise live on and hold
// its stdout open.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killProcessGroup(cmd) }
}

// killProcessGroup sends SIGKILL to the command's process group. After a
// normal exit it kills what the command left in the background. The group
// id is the leader's pid, which the kernel does not hand out again while a
// member of the group lives, and hands out in order otherwise: another
// process could only get it after pid_max pids, not in the moment between
// Wait and this call.
func killProcessGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil || cmd.Process.Pid <= 0 {
		return nil
	}
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
