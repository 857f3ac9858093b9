package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/goreleaser/chglog"
)

const changelogSource = "deploy/package/changelog.yaml"

// changelogFor reads the release notes in path and makes sure the newest
// entry is this version: a release must have its entry; any other build gets one.
func changelogFor(path string, st stamp, maintainer string) (chglog.ChangeLogEntries, error) {
	entries, err := chglog.Parse(path)
	if err != nil {
		return nil, err
	}
	for i, e := range entries {
		if e.Semver == st.Version && i > 0 {
			return nil, fmt.Errorf("%s: the entry for %s must come first (newest first)", path, st.Version)
		}
	}
	switch {
	case len(entries) > 0 && entries[0].Semver == st.Version:
	case st.Release:
		return nil, fmt.Errorf("%s has no entry for the release %s: add one (newest first)", path, st.Version)
	default:
		dev := &chglog.ChangeLog{
			Semver:   st.Version,
			Date:     st.Date,
			Packager: maintainer,
			Changes:  chglog.ChangeLogChanges{{Commit: st.Commit, Note: fmt.Sprintf("Development build of commit %s, not a release.", st.Commit)}},
		}
		entries = append(chglog.ChangeLogEntries{dev}, entries...)
	}
	for _, e := range entries {
		if e.Deb == nil { // the Debian header line needs a distribution and an urgency
			e.Deb = &chglog.ChangelogDeb{Urgency: "medium", Distributions: []string{"stable"}}
		}
	}
	return entries, nil
}

// debianTemplate is Debian's changelog format (deb-changelog(5)), with the
// blank lines around the changes that chglog's own template leaves out.
const debianTemplate = `
{{- range .Entries }}
{{ $.Name }} ({{ .Semver }}) {{ .Deb.Distributions | join " " }}; urgency={{ default "medium" .Deb.Urgency }}
{{ range .Changes }}
  * {{ .Note | trim | replace "\n" "\n    " }}
{{- end }}

 -- {{ .Packager }}  {{ date_in_zone "Mon, 02 Jan 2006 15:04:05 -0700" .Date "UTC" }}
{{ end }}`

// debianChangelog renders the entries in Debian's changelog format.
func debianChangelog(entries chglog.ChangeLogEntries) ([]byte, error) {
	tpl, err := chglog.LoadTemplateData(debianTemplate)
	if err != nil {
		return nil, err
	}
	s, err := chglog.FormatChangelog(&chglog.PackageChangeLog{Name: "gatewayd", Entries: entries}, tpl)
	if err != nil {
		return nil, err
	}
	return []byte(strings.TrimSpace(s) + "\n"), nil
}

// rpmChangelog writes the entries for nfpm's %changelog, whose template
// parses each version as semver: 1.2.0~rc.1 is written 1.2.0-rc.1 there.
func rpmChangelog(entries chglog.ChangeLogEntries, path string) error {
	out := make(chglog.ChangeLogEntries, len(entries))
	for i, e := range entries {
		c := *e
		c.Semver = strings.Replace(c.Semver, "~", "-", 1)
		out[i] = &c
	}
	return out.Save(path)
}

// writeGenerated puts the files made at build time into dir, beside the
// binary, where nfpm.yaml's ${BUILD} and the tarball find them.
func writeGenerated(dir string, st stamp, entries chglog.ChangeLogEntries, c copyright) error {
	deb, err := debianChangelog(entries)
	if err != nil {
		return err
	}
	man, err := os.ReadFile("deploy/package/gatewayd.1")
	if err != nil {
		return err
	}
	man = bytes.Replace(man, []byte(`.TH GATEWAYD 1 "" "gatewayd"`),
		fmt.Appendf(nil, `.TH GATEWAYD 1 "%s" "gatewayd %s"`, st.Date.Format("2006-01-02"), st.Version), 1)
	files := map[string][]byte{
		"changelog":        deb,
		"changelog.gz":     gz(deb),
		"gatewayd.1":       man,
		"gatewayd.1.gz":    gz(man),
		"copyright":        []byte(c.Full),
		"copyright.debian": []byte(c.Debian),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return rpmChangelog(entries, filepath.Join(dir, "changelog.yaml"))
}

// gz compresses as Debian's tools do (gzip -9n): the best compression, and
// no file name or time in the header, so the result depends on the content only.
func gz(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

// copyright is /usr/share/doc/gatewayd/copyright: gatewayd's own notice and
// the license of everything linked into the static binary. Full has every
// license text (the tarball and the .rpm); Debian refers to
// /usr/share/common-licenses for the Apache-2.0 texts, as Debian's policy
// (and lintian's copyright-file-contains-full-apache-2-license) asks.
type copyright struct{ Full, Debian string }

type module struct{ Path, Version, Dir string }

// copyrightFor lists the modules compiled into gatewayd for the targets,
// and reads the license files at each module's root. A module without one
// stops the build: it could not be redistributed.
func copyrightFor(ts []target) (copyright, error) {
	mods := map[string]module{}
	for _, t := range ts {
		cmd := exec.Command("go", "list", "-deps", "-f",
			"{{with .Module}}{{if not .Main}}{{.Path}}\t{{.Version}}\t{{.Dir}}{{end}}{{end}}", "./cmd/gatewayd")
		cmd.Env = append(os.Environ(), buildEnv(t)...)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return copyright{}, fmt.Errorf("go list: %w", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Split(line, "\t"); len(f) == 3 {
				mods[f[0]] = module{f[0], f[1], f[2]}
			}
		}
	}
	goroot, err := exec.Command("go", "env", "GOROOT", "GOVERSION").Output()
	if err != nil {
		return copyright{}, fmt.Errorf("go env: %w", err)
	}
	gr := strings.Fields(string(goroot))
	list := []module{{Path: "Go (the standard library and the runtime)", Version: gr[1], Dir: gr[0]}}
	paths := make([]string, 0, len(mods))
	for p := range mods {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		list = append(list, mods[p])
	}
	return renderCopyright(list, ownLicense())
}

// ownLicense is the LICENSE file at the repository's root, when there is one.
func ownLicense() string {
	b, err := os.ReadFile("LICENSE")
	if err != nil {
		return ""
	}
	return string(b)
}

func renderCopyright(mods []module, own string) (copyright, error) {
	var full, deb strings.Builder
	head := "gatewayd\nhttps://github.com/gatewayd/gatewayd\n\n"
	if own != "" {
		head += "gatewayd is Copyright the gatewayd authors, under this license:\n\n" + strings.TrimSpace(own) + "\n\n"
	} else {
		head += "gatewayd is Copyright the gatewayd authors. Its repository holds no\nLICENSE file yet, so no license for gatewayd itself is stated here.\n\n"
	}
	head += "The gatewayd binary is statically linked: it contains the Go standard\nlibrary and runtime and the Go modules below, under their own licenses,\nwhose texts follow.\n"
	full.WriteString(head)
	deb.WriteString(head)
	for _, m := range mods {
		files, err := licenseFiles(m.Dir)
		if err != nil {
			return copyright{}, err
		}
		if len(files) == 0 {
			return copyright{}, fmt.Errorf("module %s %s has no license file in %s", m.Path, m.Version, m.Dir)
		}
		title := fmt.Sprintf("\n%s\n%s %s\n", strings.Repeat("-", 72), m.Path, m.Version)
		full.WriteString(title)
		deb.WriteString(title)
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(m.Dir, f))
			if err != nil {
				return copyright{}, err
			}
			text := strings.TrimSpace(string(b))
			fmt.Fprintf(&full, "\n%s:\n\n%s\n", f, text)
			if isApache2(text) {
				text = "The Apache License, Version 2.0. On Debian systems its full text is in\n/usr/share/common-licenses/Apache-2.0."
			}
			fmt.Fprintf(&deb, "\n%s:\n\n%s\n", f, text)
		}
	}
	return copyright{Full: full.String(), Debian: deb.String()}, nil
}

// licenseRE matches the names of license and notice files at a module's
// root (LICENSE, LICENSE.md, COPYING, NOTICE; paho's epl-v20 and edl-v10).
var licenseRE = regexp.MustCompile(`(?i)^(licen[cs]e|copying|notice|patents|e[dp]l-v\d+)([.-].*)?$`)

func licenseFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && licenseRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

var apache2RE = regexp.MustCompile(`Apache License\s+Version 2\.0,[\s\S]*TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION`)

// isApache2 tells the full text of the Apache License 2.0 (what lintian
// looks for) from a file that only names it.
func isApache2(text string) bool { return apache2RE.MatchString(text) }
