package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// make dist (tools/dist) stamps the binary through these -X names; a
// rename here must fail a test, not ship "dev" in the packages.
func TestVersionStamped(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "gatewayd")
	build := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X main.version=1.2.0+3.gabc123456789 -X main.commit=abc123456789 -X main.date=2026-12-01T10:00:00Z", ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^gatewayd 1\.2\.0\+3\.gabc123456789 \(commit abc123456789, go1\.\d+\S* linux/\w+, built 2026-12-01T10:00:00Z\)\n$`)
	if !want.Match(out) {
		t.Errorf("-version printed %q", out)
	}
}
