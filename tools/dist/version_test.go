package main

import (
	"os/exec"
	"strings"
	"testing"
)

func TestPackageVersion(t *testing.T) {
	for _, c := range []struct {
		describe, version string
		release           bool
	}{
		{"v1.2.0-0-gabc123456789", "1.2.0", true},
		{"v1.2.0-3-gabc123456789", "1.2.0+3.gabc123456789", false},
		{"v1.2.0-0-gabc123456789-dirty", "1.2.0+0.gabc123456789.dirty", false},
		{"v1.2.0-rc.1-0-gabc123456789", "1.2.0~rc.1", true},
		{"v1.2.0-rc.1-2-gabc123456789", "1.2.0~rc.1+2.gabc123456789", false},
		{"v0.0.0-27-g5ba91f901afa", "0.0.0+27.g5ba91f901afa", false}, // no tag yet: the commit count
	} {
		v, rel, err := packageVersion(c.describe)
		if err != nil || v != c.version || rel != c.release {
			t.Errorf("%s: got %q release=%t err=%v, want %q release=%t", c.describe, v, rel, err, c.version, c.release)
		}
		if _, err := checkVersion(v); err != nil {
			t.Errorf("%s: %v", c.describe, err)
		}
	}
	for _, bad := range []string{"1.2.0-0-gabc", "v1.2-0-gabc", "vfoo-0-gabc", "v1.2.0-3", "v1.2.0-rc_1-0-gabc"} {
		if v, _, err := packageVersion(bad); err == nil {
			t.Errorf("%s: got %q, want an error", bad, v)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, ok := range []string{"1.2.0", "1.2.0+3.gabc", "1.2.0~rc.1", "99.0.0+upgrade.test"} {
		if _, err := checkVersion(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"1.2.0-1", "1.2", "v1.2.0", "1.2.0 ", "1.2.0_1", ""} {
		if _, err := checkVersion(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// The versions must sort as the commits were made, in dpkg and in rpm: a
// development build after its release and before the next, a release
// candidate before its release.
func TestVersionOrder(t *testing.T) {
	ordered := []string{}
	for _, d := range []string{
		"v0.0.0-9-gaaaaaaaaaaaa",
		"v0.0.0-10-gbbbbbbbbbbbb",
		"v1.0.0-rc.1-0-gcccccccccccc",
		"v1.0.0-rc.1-1-gdddddddddddd",
		"v1.0.0-0-geeeeeeeeeeee",
		"v1.0.0-0-geeeeeeeeeeee-dirty",
		"v1.0.0-1-gffffffffffff",
		"v1.0.0-12-g000000000000",
		"v1.0.1-0-g111111111111",
	} {
		v, _, err := packageVersion(d)
		if err != nil {
			t.Fatal(err)
		}
		ordered = append(ordered, v)
	}
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Log("no dpkg here: the dpkg order is not checked")
	}
	rpm, err := exec.LookPath("rpm")
	if err != nil {
		t.Log("no rpm here: the rpm order is not checked")
	}
	if dpkg == "" && rpm == "" {
		t.Skip("neither dpkg nor rpm is installed")
	}
	for i := 0; i+1 < len(ordered); i++ {
		a, b := ordered[i], ordered[i+1]
		if dpkg != "" {
			if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
				t.Errorf("dpkg: %s is not older than %s", a, b)
			}
		}
		if rpm != "" {
			out, err := exec.Command(rpm, "--eval", `%{lua: print(rpm.vercmp("`+a+`", "`+b+`"))}`).Output()
			if err != nil || strings.TrimSpace(string(out)) != "-1" {
				t.Errorf("rpm: %s is not older than %s (vercmp %q, %v)", a, b, out, err)
			}
		}
	}
}
