//go:build !linux

package sensors

import (
	"os"
	"os/exec"
)

// Outside Linux there is no Pdeathsig: the child is killed alone, and may
// outlive a daemon that was killed.
var (
	sigTERM os.Signal = os.Kill
	sigKILL os.Signal = os.Kill
)

func rtlChildAttrs(cmd *exec.Cmd) {}

func signalGroup(cmd *exec.Cmd, sig os.Signal) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Signal(sig)
}
