package main

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildHello builds a small program with the given environment and flags.
func buildHello(t *testing.T, env []string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "go.mod"), "module hello\n\ngo 1.26\n")
	writeFile(t, filepath.Join(dir, "main.go"), "package main\n\nimport \"net\"\n\nfunc main() { net.LookupHost(\"localhost\") }\n")
	out := filepath.Join(dir, "hello")
	cmd := exec.Command("go", append(append([]string{"build"}, args...), "-o", out, ".")...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func TestCheckBinary(t *testing.T) {
	amd64 := targets[0]
	good := buildHello(t, buildEnv(amd64), "-trimpath", "-ldflags=-s -w")
	if err := checkBinary(good, amd64); err != nil {
		t.Errorf("a static, stripped -trimpath build: %v", err)
	}
	if err := checkBinary(good, targets[1]); err == nil || !strings.Contains(err.Error(), "not arm64") {
		t.Errorf("an amd64 binary passed for arm64: %v", err)
	}
	unstripped := buildHello(t, buildEnv(amd64), "-trimpath")
	if err := checkBinary(unstripped, amd64); err == nil || !strings.Contains(err.Error(), "not stripped") {
		t.Errorf("an unstripped binary passed: %v", err)
	}
	untrimmed := buildHello(t, buildEnv(amd64), "-ldflags=-s -w")
	if err := checkBinary(untrimmed, amd64); err == nil || !strings.Contains(err.Error(), "-trimpath") {
		t.Errorf("a build without -trimpath passed: %v", err)
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Log("no gcc here: the cgo (dynamic) case is not checked")
		return
	}
	dynamic := buildHello(t, []string{"CGO_ENABLED=1", "GOOS=linux", "GOARCH=amd64"}, "-trimpath", "-ldflags=-s -w")
	if err := checkBinary(dynamic, amd64); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("a cgo build passed: %v", err)
	}
}

func TestTarball(t *testing.T) {
	t.Chdir("../..")
	build := t.TempDir()
	for _, f := range []string{"gatewayd", "gatewayd.1", "copyright", "changelog"} {
		writeFile(t, filepath.Join(build, f), f+" content\n")
	}
	date := time.Date(2027, 1, 15, 12, 0, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "x.tar.gz")
	if err := writeTarball(path, "gatewayd_1.0.0_linux_armv6", build, stamp{Date: date}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	got := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		if !h.ModTime.Equal(date) || h.Uname != "root" {
			t.Errorf("%s: time %s, owner %s", h.Name, h.ModTime, h.Uname)
		}
	}
	top := "gatewayd_1.0.0_linux_armv6/"
	for name, mode := range map[string]int64{"": 0o755, "gatewayd": 0o755, "gateway.yaml": 0o644, "gatewayd.service": 0o644,
		"README.md": 0o644, "copyright": 0o644, "examples/": 0o755, "examples/raspberry-pi.yaml": 0o644, "docs/": 0o755} {
		h := got[top+name]
		if h == nil {
			t.Errorf("%s missing", top+name)
		} else if h.Mode != mode {
			t.Errorf("%s: mode %o, want %o", h.Name, h.Mode, mode)
		}
	}
	for _, name := range []string{"docs/sensors.md", "docs/PACKAGING.md", "examples/modbus.yaml", "examples/systemd/serial.conf"} {
		if got[top+name] == nil {
			t.Errorf("%s missing (a pattern's file)", top+name)
		}
	}
	files, err := expand(tarEntries, build)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files)+4 {
		t.Errorf("%d entries, want %d files and 4 directories", len(got), len(files))
	}
}
