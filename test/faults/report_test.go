//go:build faults

package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// row is one case's line in the report. A test fills it as it goes; it is
// recorded, with PASS or FAIL, when the test ends.
type row struct {
	Case, Title string
	Taken       float64
	Published   float64
	Dropped     float64
	Refused     float64
	Resent      float64
	Lost        string // seqs missing at the subscriber, and notes on them
	Dups        int
	Reconnect   string
	Notes       []string
	Result      string
}

var (
	resultsMu sync.Mutex
	results   []*row
)

// newRow starts the report line of a case.
func newRow(t *testing.T, id, title string) *row {
	r := &row{Case: id, Title: title, Lost: "-", Reconnect: "-"}
	start := time.Now()
	t.Cleanup(func() {
		r.Result = "PASS"
		if t.Failed() {
			r.Result = "FAIL"
		}
		r.note("case took %s", time.Since(start).Round(100*time.Millisecond))
		resultsMu.Lock()
		results = append(results, r)
		resultsMu.Unlock()
	})
	return r
}

func (r *row) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// counters copies the final counters of a gatewayd into the row.
func (r *row) counters(m metricsSnap) {
	r.Taken += m.get("gatewayd_readings_taken_total")
	r.Published += m.get("gatewayd_mqtt_messages_published_total")
	r.Dropped += m.get("gatewayd_buffer_dropped_total")
	r.Refused += refused(m)
	r.Resent += m.get("gatewayd_mqtt_resent_total")
}

// seen copies what the subscriber saw into the row.
func (r *row) seen(tl tally) {
	r.Lost = fmt.Sprint(tl.Missing)
	r.Dups = tl.Dups
}

func (r *row) reconnected(d time.Duration) { r.Reconnect = d.Round(time.Millisecond).String() }

// envInfo describes the machine a run happened on.
type envInfo struct {
	date, goVersion, mosquitto, load string
	cpus                             int
}

func describeEnv() envInfo {
	e := envInfo{date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), goVersion: runtime.Version(), cpus: runtime.NumCPU()}
	if out, err := exec.Command("mosquitto", "-h").Output(); err == nil || len(out) > 0 {
		e.mosquitto, _, _ = strings.Cut(string(out), "\n")
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			e.load = strings.Join(f[:3], " ")
		}
	}
	return e
}

// The report goes between these markers, one pair per protocol; the rest
// of the file is prose.
func markers() (begin, end string) {
	if protocol == 5 {
		return "<!-- BEGIN fault-suite results, MQTT 5 (written by test/faults) -->", "<!-- END fault-suite results, MQTT 5 -->"
	}
	return "<!-- BEGIN fault-suite results (written by test/faults) -->", "<!-- END fault-suite results -->"
}

// writeReport puts the table of this run into path (relative paths are
// taken from the module root), between the markers if the file has them,
// else into a new file.
func writeReport(path string, env envInfo, took time.Duration, code int) error {
	if !filepath.IsAbs(path) {
		root, err := moduleRoot()
		if err != nil {
			return err
		}
		path = filepath.Join(root, path)
	}
	beginMarker, endMarker := markers()
	var b strings.Builder
	outcome := "all cases passed"
	if code != 0 {
		outcome = "SOME CASES FAILED"
	}
	proto := "MQTT 3.1.1"
	if protocol == 5 {
		proto = "MQTT 5"
	}
	fmt.Fprintf(&b, "%s\n\nRun of %s on %d CPUs (load average at start %s), %s, %s, %s, %s: %s in %s.\n\n",
		beginMarker, env.date, env.cpus, env.load, env.goVersion, env.mosquitto, "gatewayd built from this tree", proto, outcome, took.Round(time.Second))
	b.WriteString("| case | result | taken | published | dropped | refused | lost (missing seq) | duplicates | resent | reconnect | notes |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	resultsMu.Lock()
	for _, r := range results {
		fmt.Fprintf(&b, "| %s. %s | %s | %.0f | %.0f | %.0f | %.0f | %s | %d | %.0f | %s | %s |\n",
			r.Case, r.Title, r.Result, r.Taken, r.Published, r.Dropped, r.Refused, r.Lost, r.Dups, r.Resent, r.Reconnect,
			strings.Join(r.Notes, "; "))
	}
	resultsMu.Unlock()
	b.WriteString("\n" + endMarker + "\n")

	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	out := []byte("# Fault suite\n\n" + b.String())
	if i, j := bytes.Index(old, []byte(beginMarker)), bytes.Index(old, []byte(endMarker)); i >= 0 && j > i {
		rest := bytes.TrimPrefix(old[j+len(endMarker):], []byte("\n"))
		out = append(append(append([]byte{}, old[:i]...), b.String()...), rest...)
	}
	return os.WriteFile(path, out, 0o644)
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
