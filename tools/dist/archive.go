package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

const nfpmConfig = "deploy/package/nfpm.yaml"

// packageTarget makes the tarball, the .deb and the .rpm of one target from
// the files in dir, and returns their names in out.
func packageTarget(t target, st stamp, maintainer, dir, out string) ([]string, error) {
	base := fmt.Sprintf("gatewayd_%s_linux_%s", st.Version, t.Name)
	names := []string{base + ".tar.gz", base + ".deb", base + ".rpm"}
	if err := writeTarball(filepath.Join(out, names[0]), base, dir, st); err != nil {
		return nil, err
	}
	vars := map[string]string{"VERSION": st.Version, "ARCH": t.Nfpm, "BUILD": dir, "VARIANT": t.Variant, "MAINTAINER": maintainer}
	var missing []string
	cfg, err := nfpm.ParseFileWithEnvMapping(nfpmConfig, func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", nfpmConfig, err)
	}
	// nfpm itself asks for $NFPM_*PASSPHRASE (signing, unused here).
	for _, k := range missing {
		if !strings.HasPrefix(k, "NFPM_") {
			return nil, fmt.Errorf("%s: unknown variable ${%s}", nfpmConfig, k)
		}
	}
	for i, format := range []string{"deb", "rpm"} {
		info, err := cfg.Get(format)
		if err != nil {
			return nil, err
		}
		info.MTime = st.Date // every file's time: the same commit gives the same package
		if format == "rpm" {
			info.Changelog = filepath.Join(dir, "changelog.yaml")
		}
		if err := writePackage(format, info, filepath.Join(out, names[i+1])); err != nil {
			return nil, fmt.Errorf("%s: %w", format, err)
		}
	}
	return names, nil
}

func writePackage(format string, info *nfpm.Info, path string) error {
	p, err := nfpm.Get(format)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	info.Target = path
	if err := p.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// tarEntry is one file of the tarball, or a set of them: its name under the
// top directory (a directory ending in "/" when src is a pattern), and where
// it comes from (a path or a filepath.Glob pattern relative to the
// repository, or "build:" for a file made in the target's build directory).
type tarEntry struct {
	name, src string
	mode      int64
}

// The same files as the packages (nfpm.yaml), in one directory.
var tarEntries = []tarEntry{
	{"gatewayd", "build:gatewayd", 0o755},
	{"gateway.yaml", "deploy/package/gateway.yaml", 0o644},
	{"gatewayd.service", "deploy/systemd/gatewayd.service", 0o644},
	{"gatewayd.1", "build:gatewayd.1", 0o644},
	{"README.md", "README.md", 0o644},
	{"docs/", "docs/*.md", 0o644},
	{"copyright", "build:copyright", 0o644},
	{"changelog", "build:changelog", 0o644},
	{"examples/gateway.yaml", "configs/gateway.yaml", 0o644},
	{"examples/", "configs/examples/*.yaml", 0o644},
	{"examples/systemd/", "deploy/systemd/gatewayd.service.d/*.conf", 0o644},
}

// expand turns the entries into single files, in a fixed order.
func expand(entries []tarEntry, dir string) ([]tarEntry, error) {
	var out []tarEntry
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.src, "build:"); ok {
			out = append(out, tarEntry{e.name, filepath.Join(dir, rest), e.mode})
			continue
		}
		if !strings.ContainsAny(e.src, "*?[") {
			out = append(out, e)
			continue
		}
		matches, err := filepath.Glob(e.src)
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("tarball: nothing matches %s", e.src)
		}
		sort.Strings(matches)
		for _, m := range matches {
			out = append(out, tarEntry{e.name + filepath.Base(m), m, e.mode})
		}
	}
	return out, nil
}

// writeTarball writes gatewayd_<version>_linux_<arch>.tar.gz with one top
// directory of the same name, owned by root, every time the build's.
func writeTarball(path, top, dir string, st stamp) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	files, err := expand(tarEntries, dir)
	if err != nil {
		return err
	}
	hdr := func(name string, mode, size int64, typ byte) *tar.Header {
		return &tar.Header{Name: name, Mode: mode, Size: size, Typeflag: typ, ModTime: st.Date,
			Uname: "root", Gname: "root", Format: tar.FormatPAX}
	}
	dirs := map[string]bool{}
	for _, e := range files {
		for d := filepath.Dir(filepath.Join(top, e.name)); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	sorted := make([]string, 0, len(dirs))
	for d := range dirs {
		sorted = append(sorted, d)
	}
	sort.Strings(sorted)
	for _, d := range sorted {
		if err := tw.WriteHeader(hdr(d+"/", 0o755, 0, tar.TypeDir)); err != nil {
			return err
		}
	}
	for _, e := range files {
		b, err := os.ReadFile(e.src)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr(top+"/"+e.name, e.mode, int64(len(b)), tar.TypeReg)); err != nil {
			return err
		}
		if _, err := tw.Write(b); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// writeChecksums writes checksums.txt in sha256sum's format, so that
// `sha256sum -c checksums.txt` checks a download.
func writeChecksums(out string, names []string) error {
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	var b strings.Builder
	for _, name := range sorted {
		sum, err := sha256File(filepath.Join(out, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, name)
	}
	return os.WriteFile(filepath.Join(out, "checksums.txt"), []byte(b.String()), 0o644)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func listFiles(w io.Writer, out string, names []string) error {
	fmt.Fprintf(w, "\n%s/:\n", out)
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(out, name))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %10d  %s\n", fi.Size(), name)
	}
	return nil
}
