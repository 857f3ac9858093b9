package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/goreleaser/chglog"
)

const maint = "A Maintainer <a@example.org>"

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const releases = `- semver: 1.1.0
  date: 2027-02-01T12:00:00Z
  packager: B Packager <b@example.org>
  changes:
    - note: |-
        Reload without a restart.
        Second line of the note.
- semver: 1.0.0
  date: 2027-01-15T12:00:00Z
  packager: B Packager <b@example.org>
  deb: {urgency: low, distributions: [stable]}
  changes:
    - note: First release.
`

func TestChangelog(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "changelog.yaml"), releases)
	date := time.Date(2027, 3, 1, 8, 30, 0, 0, time.UTC)

	dev, err := changelogFor(path, stamp{Version: "1.1.0+4.gabc123456789", Commit: "abc123456789", Date: date}, maint)
	if err != nil {
		t.Fatal(err)
	}
	if len(dev) != 3 || dev[0].Semver != "1.1.0+4.gabc123456789" || dev[0].Packager != maint {
		t.Fatalf("a development build gets its own entry on top: %+v", dev[0])
	}
	deb, err := debianChangelog(dev)
	if err != nil {
		t.Fatal(err)
	}
	want := `gatewayd (1.1.0+4.gabc123456789) stable; urgency=medium

  * Development build of commit abc123456789, not a release.

 -- A Maintainer <a@example.org>  Mon, 01 Mar 2027 08:30:00 +0000

gatewayd (1.1.0) stable; urgency=medium

  * Reload without a restart.
    Second line of the note.

 -- B Packager <b@example.org>  Mon, 01 Feb 2027 12:00:00 +0000

gatewayd (1.0.0) stable; urgency=low

  * First release.

 -- B Packager <b@example.org>  Fri, 15 Jan 2027 12:00:00 +0000
`
	if string(deb) != want {
		t.Errorf("Debian changelog:\n%s\nwant:\n%s", deb, want)
	}
	if parse, err := exec.LookPath("dpkg-parsechangelog"); err == nil {
		f := writeFile(t, filepath.Join(t.TempDir(), "changelog"), string(deb))
		out, err := exec.Command(parse, "-l", f, "--show-field", "Version").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "1.1.0+4.gabc123456789" {
			t.Errorf("dpkg-parsechangelog: %s %v", out, err)
		}
	}

	rel, err := changelogFor(path, stamp{Version: "1.1.0", Release: true}, maint)
	if err != nil || len(rel) != 2 || rel[0].Semver != "1.1.0" {
		t.Errorf("a release uses its own entry: %v, %d entries", err, len(rel))
	}
	if _, err := changelogFor(path, stamp{Version: "1.2.0", Release: true}, maint); err == nil || !strings.Contains(err.Error(), "no entry for the release 1.2.0") {
		t.Errorf("a release without an entry: %v", err)
	}
	if _, err := changelogFor(path, stamp{Version: "1.0.0", Release: true}, maint); err == nil || !strings.Contains(err.Error(), "must come first") {
		t.Errorf("a release whose entry is not the newest: %v", err)
	}
}

// nfpm's %changelog template parses each version as semver.
func TestRPMChangelog(t *testing.T) {
	entries := chglog.ChangeLogEntries{{Semver: "1.2.0~rc.1+2.gabc", Date: time.Unix(0, 0).UTC(), Packager: maint}}
	path := filepath.Join(t.TempDir(), "changelog.yaml")
	if err := rpmChangelog(entries, path); err != nil {
		t.Fatal(err)
	}
	back, err := chglog.Parse(path)
	if err != nil || len(back) != 1 || back[0].Semver != "1.2.0-rc.1+2.gabc" || entries[0].Semver != "1.2.0~rc.1+2.gabc" {
		t.Fatalf("got %+v, %v; the entries passed in must not change", back, err)
	}
}

// apache2Text has what lintian looks for in a full Apache-2.0 text.
const apache2Text = `
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/

   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION

   1. Definitions.
`

func TestCopyright(t *testing.T) {
	dir := t.TempDir()
	golang := filepath.Join(dir, "go")
	writeFile(t, filepath.Join(golang, "LICENSE"), "Copyright 2009 The Go Authors.\nBSD-3-Clause text\n")
	apache := filepath.Join(dir, "apache")
	writeFile(t, filepath.Join(apache, "LICENSE"), apache2Text)
	writeFile(t, filepath.Join(apache, "NOTICE"), "Copyright 2015 The Prometheus Authors\n")
	writeFile(t, filepath.Join(apache, "LICENSE_test.go"), "package x\n") // not a license file
	paho := filepath.Join(dir, "paho")
	writeFile(t, filepath.Join(paho, "LICENSE"), "Eclipse Public License - v 2.0, see epl-v20\n")
	writeFile(t, filepath.Join(paho, "epl-v20"), "Eclipse Public License - v 2.0 (the text)\n")
	writeFile(t, filepath.Join(paho, "edl-v10"), "Eclipse Distribution License - v 1.0 (the text)\n")
	mods := []module{
		{"Go (the standard library and the runtime)", "go1.26.8", golang},
		{"example.com/apache", "v1.0.0", apache},
		{"example.com/paho", "v1.5.1", paho},
	}
	c, err := renderCopyright(mods, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"no license for gatewayd itself", "example.com/paho v1.5.1", "epl-v20:", "edl-v10:", "NOTICE:", "Copyright 2015 The Prometheus Authors"} {
		if !strings.Contains(c.Full, s) || !strings.Contains(c.Debian, s) {
			t.Errorf("%q missing", s)
		}
	}
	if strings.Contains(c.Full, "package x") {
		t.Error("LICENSE_test.go taken for a license")
	}
	if !isApache2(c.Full) || isApache2(c.Debian) || !strings.Contains(c.Debian, "/usr/share/common-licenses/Apache-2.0") {
		t.Errorf("the full text must stay in Full and be a reference in Debian:\n%s", c.Debian)
	}
	if order := regexp.MustCompile(`(?s)Go \(the standard.*example.com/apache.*example.com/paho`); !order.MatchString(c.Full) {
		t.Error("modules out of order")
	}

	own, err := renderCopyright(mods[:1], "MIT License\n\nCopyright the gatewayd authors\n")
	if err != nil || !strings.Contains(own.Full, "under this license:\n\nMIT License") {
		t.Errorf("a LICENSE at the root is gatewayd's own: %v\n%s", err, own.Full)
	}

	if _, err := renderCopyright(append(mods, module{"example.com/none", "v0.1.0", t.TempDir()}), ""); err == nil ||
		!strings.Contains(err.Error(), "example.com/none v0.1.0 has no license file") {
		t.Errorf("a module without a license must stop the build: %v", err)
	}
}

// The modules really linked into gatewayd all have a license file.
func TestCopyrightOfGatewayd(t *testing.T) {
	t.Chdir("../..")
	c, err := copyrightFor(targets[:1])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"github.com/eclipse/paho.mqtt.golang", "gopkg.in/yaml.v3", "github.com/simonvetter/modbus", "Go (the standard library"} {
		if !strings.Contains(c.Full, "\n"+m) {
			t.Errorf("%s missing from the copyright file", m)
		}
	}
}

func TestGzipIsDebianStyle(t *testing.T) {
	b := gz([]byte("hello\n"))
	// RFC 1952: MTIME (bytes 4-7) zero, XFL (byte 8) 2 = best compression, no FNAME flag.
	if b[3]&0x08 != 0 || b[4]|b[5]|b[6]|b[7] != 0 || b[8] != 2 {
		t.Errorf("header % x: want no name, no time, XFL=2 (gzip -9n)", b[:10])
	}
}
