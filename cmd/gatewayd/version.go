package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Stamped at build time by `make dist` (tools/dist):
//
//	-ldflags "-X main.version=1.2.0 -X main.commit=5ba91f9abcde -X main.date=2026-12-01T10:00:00Z"
//
// A plain `go build` or `go run` leaves them as they are here.
var (
	version = "dev"
	commit  = ""
	date    = ""
)

// versionString is what -version prints:
//
//	gatewayd 1.2.0 (commit 5ba91f9abcde, go1.26.8 linux/armv6, built 2026-12-01T10:00:00Z)
func versionString() string {
	c, arch := commit, runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "" && len(s.Value) >= 12:
				c = s.Value[:12]
			case s.Key == "GOARM" && arch == "arm":
				arch = "armv" + s.Value // the ARM level it was built for: a Pi Zero/1 needs armv6
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	built := ""
	if date != "" {
		built = ", built " + date
	}
	return fmt.Sprintf("gatewayd %s (commit %s, %s %s/%s%s)", version, c, runtime.Version(), runtime.GOOS, arch, built)
}
