// Command dist builds gatewayd's release files into dist/: for each target
// (amd64, arm64, armv7, armv6) a tarball, a .deb and a .rpm, and
// checksums.txt over them all. `make dist` runs it from the repository's
// root:
//
//	cd tools/dist && go run . -root ../..
//
// The packages are made by nfpm (github.com/goreleaser/nfpm) from
// deploy/package/nfpm.yaml. This is a module of its own so that nfpm and
// the ~40 modules it brings stay out of the daemon's go.mod; it needs
// nothing but Go (and git, for the version).
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// target is one platform gatewayd is released for.
type target struct {
	Name    string // in file names: gatewayd_<version>_linux_<Name>.deb
	GOARCH  string
	GOARM   string
	Nfpm    string // nfpm's architecture: deb amd64/arm64/armhf, rpm x86_64/aarch64/armv7hl/armv6hl
	Variant string // the package description's last lines (at most 80 columns each)
}

// Raspberry Pi OS's armhf is ARMv6 (a Pi Zero or 1 has an ARM1176), so the
// armv6 packages are the ones for every Raspberry Pi. The armv7 ones are for
// other armhf boards; both say so in their description, since dpkg calls
// both armhf.
var targets = []target{
	{Name: "amd64", GOARCH: "amd64", Nfpm: "amd64",
		Variant: "Built for 64-bit x86 PCs (amd64)."},
	{Name: "arm64", GOARCH: "arm64", Nfpm: "arm64",
		Variant: "Built for 64-bit ARM (arm64): a Raspberry Pi 3, 4, 5 or Zero 2 W\nwith a 64-bit OS, and other ARMv8 boards."},
	{Name: "armv7", GOARCH: "arm", GOARM: "7", Nfpm: "arm7",
		Variant: "Built for ARMv7 (GOARM=7) armhf boards; it does not run on a Raspberry\nPi Zero or 1: for a Raspberry Pi with a 32-bit OS, take the armv6 package."},
	{Name: "armv6", GOARCH: "arm", GOARM: "6", Nfpm: "arm6",
		Variant: "Built for ARMv6 (GOARM=6), Raspberry Pi OS's armhf: runs on every\nRaspberry Pi with a 32-bit OS, the Zero and the 1 included."},
}

// defaultMaintainer goes into the packages' Maintainer field; -maintainer
// (or $GATEWAYD_MAINTAINER) sets the one who publishes them.
const defaultMaintainer = "gatewayd maintainers <gatewayd@users.noreply.github.com>"

func main() {
	root := flag.String("root", ".", "the repository's root directory")
	out := flag.String("out", "dist", "where the release files go (emptied first), relative to -root")
	version := flag.String("version", "", "the version to stamp, e.g. 1.2.0 (default: from git describe)")
	only := flag.String("targets", "", "comma-separated subset of amd64,arm64,armv7,armv6 (default: all)")
	maintainer := flag.String("maintainer", envOr("GATEWAYD_MAINTAINER", defaultMaintainer), "the packages' Maintainer: Name <email>")
	flag.Parse()
	if err := run(*root, *out, *version, *only, *maintainer); err != nil {
		fmt.Fprintln(os.Stderr, "dist:", err)
		os.Exit(1)
	}
}

func run(root, out, version, only, maintainer string) error {
	if err := os.Chdir(root); err != nil {
		return err
	}
	ts, err := selectTargets(only)
	if err != nil {
		return err
	}
	st, err := stampFor(version)
	if err != nil {
		return err
	}
	fmt.Printf("gatewayd %s (commit %s, built %s)\n", st.Version, st.Commit, st.Date.Format(timeFormat))
	log, err := changelogFor(changelogSource, st, maintainer)
	if err != nil {
		return err
	}
	copyright, err := copyrightFor(ts)
	if err != nil {
		return err
	}

	if err := os.RemoveAll(out); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "gatewayd-dist-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	var made []string
	for _, t := range ts {
		dir := filepath.Join(work, t.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := buildBinary(t, st, filepath.Join(dir, "gatewayd")); err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		if err := writeGenerated(dir, st, log, copyright); err != nil {
			return err
		}
		files, err := packageTarget(t, st, maintainer, dir, out)
		if err != nil {
			return fmt.Errorf("%s: %w", t.Name, err)
		}
		made = append(made, files...)
	}
	if err := writeChecksums(out, made); err != nil {
		return err
	}
	return listFiles(os.Stdout, out, append(made, "checksums.txt"))
}

func selectTargets(only string) ([]target, error) {
	if only == "" {
		return targets, nil
	}
	var ts []target
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, t := range targets {
			if t.Name == name {
				ts, found = append(ts, t), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown target %q (amd64, arm64, armv7, armv6)", name)
		}
	}
	return ts, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
