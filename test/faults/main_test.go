//go:build faults

package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// gatewaydBin is the binary under test, built once by TestMain.
var gatewaydBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	flag.Parse()
	if _, err := exec.LookPath("mosquitto"); err != nil {
		fmt.Fprintln(os.Stderr, "faults: mosquitto is not in PATH (Debian: apt-get install mosquitto)")
		return 1
	}
	dir, err := os.MkdirTemp("", "gatewayd-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	gatewaydBin = filepath.Join(dir, "gatewayd")
	build := exec.Command("go", "build", "-o", gatewaydBin, "github.com/gatewayd/gatewayd/cmd/gatewayd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: building gatewayd:", err)
		return 1
	}

	env := describeEnv()
	start := time.Now()
	code := m.Run()
	if path := os.Getenv("GATEWAYD_FAULTS_REPORT"); path != "" {
		if err := writeReport(path, env, time.Since(start), code); err != nil {
			fmt.Fprintln(os.Stderr, "faults: writing the report:", err)
			return 1
		}
	}
	return code
}
