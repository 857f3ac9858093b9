//go:build !unix

package sensors

import "os/exec"

// ownProcessGroup leaves os/exec's default: ctx's end kills the command
// alone. Process groups are a Unix notion.
func ownProcessGroup(cmd *exec.Cmd) {}

func killProcessGroup(cmd *exec.Cmd) error { return nil }
