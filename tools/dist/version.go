package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const timeFormat = time.RFC3339

// stamp is what the binary and the packages are labelled with.
type stamp struct {
	Version string    // 1.2.0, 1.2.0~rc.1, 1.2.0+3.gabc123456789: as dpkg and rpm take it
	Release bool      // exactly a release tag, with no local changes
	Commit  string    // 12 hex digits, or "unknown"
	Date    time.Time // the commit's time (a rebuild of a commit is identical), or now for a dirty tree
}

// stampFor reads the version, commit and date from git; a version given on
// the command line (a build from a source tarball) wins.
func stampFor(version string) (stamp, error) {
	st := stamp{Commit: "unknown", Date: time.Now().UTC().Truncate(time.Second)}
	commit, gitErr := git("rev-parse", "--short=12", "HEAD")
	if gitErr == nil {
		st.Commit = commit
	}
	dirty := false
	if gitErr == nil {
		status, err := git("status", "--porcelain", "--untracked-files=no")
		if err != nil {
			return st, err
		}
		dirty = status != ""
		if !dirty {
			ct, err := git("log", "-1", "--format=%ct")
			if err != nil {
				return st, err
			}
			sec, err := strconv.ParseInt(ct, 10, 64)
			if err != nil {
				return st, fmt.Errorf("commit time %q: %w", ct, err)
			}
			st.Date = time.Unix(sec, 0).UTC()
		}
	}
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return st, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
		}
		st.Date = time.Unix(sec, 0).UTC()
	}

	switch {
	case version != "":
		v, err := checkVersion(strings.TrimPrefix(version, "v"))
		if err != nil {
			return st, err
		}
		st.Version, st.Release = v, !strings.Contains(v, "+")
	case gitErr != nil:
		return st, fmt.Errorf("no git repository to take the version from (give -version): %w", gitErr)
	default:
		desc, err := git("describe", "--tags", "--long", "--abbrev=12", "--match", "v[0-9]*", "--dirty")
		if err != nil {
			// No release tag yet: count the commits, so that versions still increase.
			n, cerr := git("rev-list", "--count", "HEAD")
			if cerr != nil {
				return st, cerr
			}
			desc = fmt.Sprintf("v0.0.0-%s-g%s", n, commit)
			if dirty {
				desc += "-dirty"
			}
		}
		st.Version, st.Release, err = packageVersion(desc)
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

var describeRE = regexp.MustCompile(`^v(\d+\.\d+\.\d+)(?:-([0-9A-Za-z.]+))?-(\d+)-g([0-9a-f]+)(-dirty)?$`)

// packageVersion maps `git describe --tags --long --dirty` to a version that
// dpkg takes as a native one (no "-": that would be a Debian revision, and
// lintian would want a Debian changelog) and rpm takes as a Version (no "-"
// either), and that both sort in the order the commits were made:
//
//	v1.2.0-0-gabc              1.2.0              (a release)
//	v1.2.0-3-gabc              1.2.0+3.gabc       (3 commits later: after 1.2.0, before 1.2.1)
//	v1.2.0-rc.1-0-gabc         1.2.0~rc.1         (~ sorts before the release, in dpkg and rpm)
//	v1.2.0-0-gabc-dirty        1.2.0+0.gabc.dirty (local changes: never a release)
func packageVersion(describe string) (version string, release bool, err error) {
	m := describeRE.FindStringSubmatch(describe)
	if m == nil {
		return "", false, fmt.Errorf("git describe gave %q: not vMAJOR.MINOR.PATCH[-PRERELEASE]-N-gHASH", describe)
	}
	v := m[1]
	if m[2] != "" {
		v += "~" + m[2]
	}
	if m[3] == "0" && m[5] == "" {
		return v, true, nil
	}
	v += "+" + m[3] + ".g" + m[4]
	if m[5] != "" {
		v += ".dirty"
	}
	return v, false, nil
}

var versionRE = regexp.MustCompile(`^\d+\.\d+\.\d+[0-9A-Za-z.+~]*$`)

func checkVersion(v string) (string, error) {
	if !versionRE.MatchString(v) {
		return "", fmt.Errorf("version %q: want MAJOR.MINOR.PATCH followed only by letters, digits, '.', '+' and '~' (a '-' would make dpkg read a Debian revision)", v)
	}
	return v, nil
}

func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
			return "", fmt.Errorf("git %s: %s", strings.Join(args, " "), strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}
