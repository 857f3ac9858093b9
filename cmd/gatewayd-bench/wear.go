package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Goals of the wear scenario (issue 9).
const (
	wearConnectedGoal = 50 // bytes written per reading, connected
	wearAwayGoal      = 3  // times the payload's bytes per reading, broker away
)

// wear measures what gatewayd's disk buffer writes to storage per reading,
// from /proc/PID/io write_bytes (the pages the process dirtied: what
// reaches the block device), with 10 sensors every second: connected to
// the broker, which acknowledges within milliseconds, and with the broker
// away (a URL where nothing listens). The baselines write nothing; run it
// again with -gatewayd of an older build to compare builds.
func (b *bench) wear() error {
	warm, d := 5*time.Second, 30*time.Second
	if b.o.short {
		warm, d = time.Second, 2*time.Second
	}
	dead, err := freeAddr() // nothing listens there
	if err != nil {
		return err
	}
	var errs []error
	conn, err := b.wearRun("tcp://"+b.broker.addr(), warm, d)
	errs = append(errs, err)
	away, err := b.wearRun("tcp://"+dead, warm, d)
	errs = append(errs, err)

	// The payloads gatewayd renders for these sensors, byte for byte as
	// long as the baselines' (readings.go).
	r := newReadings("wear", "gatewayd-disk-1", 10)
	var msgs [2]message
	payload := 0
	for i := range 10 {
		r.read(i, time.Now(), &msgs)
		payload += len(msgs[0].payload) + len(msgs[1].payload)
	}
	mean := float64(payload) / 20

	sc := fmt.Sprintf("wear (10 sensors @1s, disk buffer, %s each)", d)
	b.goal(row{scenario: sc, figure: "connected: bytes written per reading", unit: "B", gw: conn.perReading(), paho: none, py: none},
		conn.ok() && conn.perReading() <= wearConnectedGoal, fmt.Sprintf("<= %d B", wearConnectedGoal))
	b.add(row{scenario: sc, figure: "connected: commits per minute", unit: "/min", gw: conn.perMinute(), paho: none, py: none})
	b.goal(row{scenario: sc, figure: "broker away: bytes written per reading", unit: "B", gw: away.perReading(), paho: none, py: none},
		away.ok() && away.perReading() <= wearAwayGoal*mean, fmt.Sprintf("<= %dx payload (%.0f B)", wearAwayGoal, wearAwayGoal*mean))
	b.add(row{scenario: sc, figure: "broker away: commits per minute", unit: "/min", gw: away.perMinute(), paho: none, py: none})
	b.add(row{scenario: sc, figure: "payload bytes per reading", unit: "B", gw: mean, paho: mean, py: mean})
	return joinErrs(errs)
}

// wearResult is what one gatewayd wrote over the measured window.
type wearResult struct {
	bytes, readings, commits float64
	window                   time.Duration
}

func (w wearResult) ok() bool { return w.readings > 0 }

func (w wearResult) perReading() float64 { return orNone(w.ok(), w.bytes/w.readings) }

func (w wearResult) perMinute() float64 {
	return orNone(w.ok(), w.commits/w.window.Minutes())
}

// wearRun runs gatewayd with the disk buffer against url: warm-up, then a
// measured window of d.
func (b *bench) wearRun(url string, warm, d time.Duration) (wearResult, error) {
	b.runs++
	run := fmt.Sprintf("gatewayd-disk-%d", b.runs)
	addr, err := freeAddr()
	if err != nil {
		return wearResult{}, err
	}
	cfg := gwConfig{run: run, root: "wear", url: url, metrics: addr, sensors: 10, interval: time.Second,
		qos: 1, window: b.o.window, dir: filepath.Join(b.dir, run+"-spool")}
	path := filepath.Join(b.dir, run+".yaml")
	if err := os.WriteFile(path, cfg.yaml(), 0o644); err != nil {
		return wearResult{}, err
	}
	b.log.Info("measuring", "kind", "gatewayd", "scenario", "wear", "url", url)
	c, err := startChild(run, b.gatewayd, "-config", path)
	if err != nil {
		return wearResult{}, err
	}
	b.children = append(b.children, c)
	res, err := func() (wearResult, error) {
		url := "http://" + addr + "/metrics"
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if n, err := scrapeCounter(url, "gatewayd_readings_taken_total"); err == nil && n > 0 {
				break
			}
			if c.exited() || time.Now().After(deadline) {
				return wearResult{}, fmt.Errorf("%s: no reading taken within 30s: %s", run, c.out.String())
			}
		}
		if err := b.sleep(warm); err != nil {
			return wearResult{}, err
		}
		b0, t0, c0, err := wearSample(c.pid(), url)
		if err != nil {
			return wearResult{}, err
		}
		start := time.Now()
		if err := b.sleep(d); err != nil {
			return wearResult{}, err
		}
		b1, t1, c1, err := wearSample(c.pid(), url)
		return wearResult{bytes: float64(b1 - b0), readings: float64(t1 - t0), commits: float64(c1 - c0), window: time.Since(start)}, err
	}()
	if err != nil {
		c.kill()
		return res, err
	}
	return res, c.stop(20 * time.Second)
}

// wearSample reads what pid wrote to storage so far and its readings and
// commits counters.
func wearSample(pid int, metricsURL string) (written, taken, commits uint64, err error) {
	if written, err = writeBytes(pid); err != nil {
		return
	}
	if taken, err = scrapeCounter(metricsURL, "gatewayd_readings_taken_total"); err != nil {
		return
	}
	commits, err = scrapeCounter(metricsURL, "gatewayd_buffer_disk_commits_total")
	if err != nil {
		// A gatewayd from before the counter (-gatewayd of an older
		// build) is measured all the same.
		commits, err = 0, nil
	}
	return
}

// writeBytes is /proc/PID/io's write_bytes: what the process caused to be
// written to storage.
func writeBytes(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/io has no write_bytes", pid)
}
