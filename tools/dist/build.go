package main

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// buildBinary cross-compiles gatewayd for t: static (CGO_ENABLED=0, which
// also keeps it from needing any C library on the target), -trimpath (no
// build paths inside), stripped (-s -w: lintian's unstripped-binary-or-object
// is an error), with the version, commit and date stamped.
func buildBinary(t target, st stamp, out string) error {
	ldflags := strings.Join([]string{
		"-s", "-w",
		"-X", "main.version=" + st.Version,
		"-X", "main.commit=" + st.Commit,
		"-X", "main.date=" + st.Date.Format(timeFormat),
	}, " ")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/gatewayd")
	cmd.Env = append(os.Environ(), buildEnv(t)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	fmt.Printf("building %s: %s go build -trimpath -ldflags %q\n", t.Name, strings.Join(buildEnv(t), " "), ldflags)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}
	return checkBinary(out, t)
}

// buildEnv pins every setting that chooses the instructions, so that a
// developer's environment (GOAMD64=v3, say) cannot make a package that only
// runs on newer machines.
func buildEnv(t target) []string {
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + t.GOARCH}
	switch t.GOARCH {
	case "amd64":
		env = append(env, "GOAMD64=v1")
	case "arm64":
		env = append(env, "GOARM64=v8.0")
	case "arm":
		env = append(env, "GOARM="+t.GOARM)
	}
	return env
}

var machines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM}

// checkBinary refuses a binary that is not what the packages promise: the
// target's machine and ARM level, static, stripped, built with -trimpath
// and without cgo. It reads the file itself, not the flags that made it.
func checkBinary(path string, t target) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if f.Machine != machines[t.GOARCH] {
		return fmt.Errorf("%s is for %s, not %s", path, f.Machine, t.GOARCH)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	for _, s := range f.Sections {
		if s.Name == ".symtab" || strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") {
			return fmt.Errorf("%s is not stripped (section %s)", path, s.Name)
		}
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}
	want := map[string]string{"CGO_ENABLED": "0", "-trimpath": "true", "GOOS": "linux", "GOARCH": t.GOARCH}
	if t.GOARM != "" {
		want["GOARM"] = t.GOARM
	}
	got := map[string]string{}
	for _, s := range bi.Settings {
		got[s.Key] = s.Value
	}
	for k, v := range want {
		if got[k] != v {
			return fmt.Errorf("%s: build setting %s is %q, want %q", path, k, got[k], v)
		}
	}
	return nil
}
