//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// outage is how long the broker stays away in the cases that take it away.
const outage = 5 * time.Second

// rig is one case's broker, witness and gatewayd config.
type rig struct {
	// series is how many series the subscriber gets (default: all).
	series int
	t      *testing.T
	id     string
	broker *broker
	sub    *subscriber
	config string
}

// newRig starts a mosquitto and a subscriber for gateway id, and writes a
// gatewayd config for them (gatewayd itself is started by the case).
func newRig(t *testing.T, id string, d durability, c gwConfig, brokerConf ...string) *rig {
	t.Helper()
	r := &rig{t: t, id: id, broker: newBroker(t, d, brokerConf...)}
	r.sub = newSubscriber(t, r.broker.url(), "faults-sub-"+id, id)
	c.id, c.url = id, r.broker.url()
	r.config = writeConfig(t, c)
	return r
}

// finish takes the final counters at a quiet moment, stops gatewayd with
// SIGTERM, and waits until the subscriber holds everything the broker has
// for it. It returns the counters and what the subscriber saw.
func (r *rig) finish(g *gatewayd, row *row) (metricsSnap, tally) {
	r.t.Helper()
	at := time.Now()
	m := quiet(g)
	r.sub.waitFresh(at, r.series)
	terminate(g)
	r.sub.probe(30 * time.Second)
	tl := r.sub.tally()
	row.counters(m)
	row.seen(tl)
	checkResent(r.t, m)
	r.t.Logf("final counters: %s", m.summary())
	r.t.Logf("subscriber: %s", tl)
	return m, tl
}

// sleepUntil waits until t: the length of an outage is the scenario, not
// an event to wait for.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

// brokerDown takes the broker away with sig for outage, checking that
// gatewayd notices and keeps taking readings, and brings it back. It
// returns the reconnect time and the counters of just after the broker went.
func (r *rig) brokerDown(g *gatewayd, sig syscall.Signal) (time.Duration, metricsSnap) {
	r.t.Helper()
	r.broker.stop(sig)
	down := time.Now()
	before := g.scrape()
	g.waitLog(down.Add(-time.Second), 10*time.Second, "connection lost")
	sleepUntil(down.Add(outage))
	during := g.scrape()
	if got := during.get("gatewayd_readings_taken_total") - before.get("gatewayd_readings_taken_total"); got < float64(readingsPerSec) {
		r.t.Errorf("only %v readings taken during a %s outage", got, outage)
	}
	if during.get("gatewayd_mqtt_connected") != 0 {
		r.t.Error("gatewayd_mqtt_connected is not 0 while the broker is down")
	}
	r.broker.start()
	return g.reconnectedTo(r.broker), before
}

// a. The broker is stopped cleanly and comes back after 5 s.
func TestBrokerSIGTERM(t *testing.T) {
	row := newRow(t, "a", "broker SIGTERM, down 5 s")
	r := newRig(t, "fa", autosaveShort, gwConfig{})
	g := startGatewayd(t, r.config)
	warmUp(g)
	reconnect, _ := r.brokerDown(g, syscall.SIGTERM)
	row.reconnected(reconnect)
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
	checkReconnected(t, m)
}

// b. The broker is killed with the subscriber connected. The subscriber's
// session was in a snapshot before the kill, and what the broker
// acknowledged it had already passed on, so nothing is lost.
func TestBrokerSIGKILL(t *testing.T) {
	row := newRow(t, "b", "broker SIGKILL, down 5 s (autosave_interval 1)")
	r := newRig(t, "fb", autosaveShort, gwConfig{})
	g := startGatewayd(t, r.config)
	warmUp(g)
	r.broker.waitSaved(r.sub.subscribed)
	reconnect, _ := r.brokerDown(g, syscall.SIGKILL)
	row.reconnected(reconnect)
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
	checkReconnected(t, m)
}

// b2, b3. The broker is killed while the subscriber is away, so that the
// readings for it wait in the broker's queue: whether they survive is the
// broker's durability, not gatewayd's. gatewayd must account for every
// reading either way: each one was acknowledged by the broker (published
// == taken, nothing dropped), so what the subscriber misses the broker lost.
func TestBrokerSIGKILLSubscriberAway(t *testing.T) {
	for _, tc := range []struct {
		id, title string
		d         durability
	}{
		// A snapshot every 2 s: the subscriber's session survives, and of
		// the readings queued for it only those since the last snapshot
		// may be lost; those gatewayd buffered during the outage arrive.
		{"b2", "broker SIGKILL, subscriber away (autosave_interval 1)", autosaveShort},
		// No snapshot before the kill: the subscriber's session is gone,
		// with everything queued for it, and what gatewayd delivers after
		// the restart finds no subscription until the subscriber is back.
		{"b3", "broker SIGKILL, subscriber away (mosquitto's default autosave_interval 1800)", autosaveDefault},
	} {
		t.Run(tc.id, func(t *testing.T) {
			row := newRow(t, tc.id, tc.title)
			r := newRig(t, "f"+tc.id, tc.d, gwConfig{})
			g := startGatewayd(t, r.config)
			warmUp(g)
			if tc.d == autosaveShort {
				r.broker.waitSaved(r.sub.subscribed)
			}
			r.sub.stop()
			// The subscriber got seqs 1..n of every series (n about the
			// same for all); now a second of readings is queued for it.
			got := r.sub.tally().Distinct
			takenAtLeast(g, g.scrape(), float64(readingsPerSec))
			reconnect, killed := r.brokerDown(g, syscall.SIGKILL)
			row.reconnected(reconnect)
			quiet(g) // gatewayd delivered its buffer before the subscriber is back
			r.sub.start()
			m, tl := r.finish(g, row)
			checkReconnected(t, m)
			if tl.Conflicts > 0 || tl.OutOfOrder > 0 {
				t.Errorf("subscriber: %s", tl)
			}
			if m.get("gatewayd_buffer_dropped_total") != 0 {
				t.Errorf("gatewayd dropped readings: %s", m.summary())
			}
			// What gatewayd had taken by the kill and the subscriber had
			// not received before it left (over-counted by the few taken
			// between the kill and the scrape, which gatewayd buffered).
			queued := int(killed.get("gatewayd_readings_taken_total")) - got
			row.Lost = fmt.Sprintf("%d, all acknowledged by the broker (gatewayd dropped none and had all but the last few ms acknowledged); %d were queued for the subscriber at the kill", tl.Missing, queued)
			switch tc.d {
			case autosaveShort:
				if tl.Missing > queued {
					t.Errorf("%d readings lost, more than the %d queued for the subscriber at the kill: %s", tl.Missing, queued, tl)
				}
			case autosaveDefault:
				if tl.Missing < queued {
					t.Errorf("%d readings lost, fewer than the %d queued at the kill, though mosquitto had not saved: %s", tl.Missing, queued, tl)
				}
			}
		})
	}
}

// c. The broker freezes (SIGSTOP) longer than the keepalive: the TCP
// connection stays up but nothing answers.
func TestBrokerSIGSTOP(t *testing.T) {
	row := newRow(t, "c", "broker SIGSTOP 5 s, then SIGCONT (keepalive 2 s)")
	r := newRig(t, "fc", autosaveShort, gwConfig{})
	g := startGatewayd(t, r.config)
	warmUp(g)
	r.broker.signal(syscall.SIGSTOP)
	stopped := time.Now()
	l := g.waitLog(stopped, 10*time.Second, "connection lost", "the broker stopped acknowledging; reconnecting")
	noticed := l.Time.Sub(stopped)
	row.note("noticed after %s (%q)", noticed.Round(time.Millisecond), l.Msg)
	t.Logf("frozen broker noticed after %s: %s", noticed.Round(time.Millisecond), l.Msg)
	if noticed > 3*time.Second { // 1.5 x keepalive
		t.Errorf("frozen broker noticed after %s, want within 1.5 x keepalive (3s)", noticed)
	}
	sleepUntil(stopped.Add(outage))
	resumed := time.Now()
	r.broker.signal(syscall.SIGCONT)
	row.reconnected(g.reconnectedAfter(resumed))
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
	checkReconnected(t, m)
}

// d. No broker when gatewayd starts; it appears 3 s later.
func TestBrokerAbsentAtStart(t *testing.T) {
	row := newRow(t, "d", "broker absent at start, appears after 3 s")
	r := newRig(t, "fd", autosaveShort, gwConfig{})
	// The subscriber's session (and its subscription) is on the broker's
	// disk: it is there when the broker comes back.
	r.broker.stop(syscall.SIGTERM)
	g := startGatewayd(t, r.config)
	m := g.waitMetrics(10*time.Second, "readings buffered", func(m metricsSnap) bool {
		return m.get("gatewayd_buffer_messages") >= 50
	})
	if m.get("gatewayd_mqtt_connected") != 0 {
		t.Error("gatewayd_mqtt_connected is not 0 without a broker")
	}
	if code := g.get("/readyz"); code != 503 {
		t.Errorf("/readyz = %d without a broker, want 503", code)
	}
	if code := g.get("/healthz"); code != 200 {
		t.Errorf("/healthz = %d without a broker, want 200", code)
	}
	sleepUntil(g.started.Add(3 * time.Second))
	r.broker.start()
	row.reconnected(g.reconnectedTo(r.broker))
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
	if tl.Distinct == 0 {
		t.Fatal("nothing arrived")
	}
	if m.get("gatewayd_mqtt_connects_total") != 1 || m.get("gatewayd_mqtt_connect_failures_total") < 1 {
		t.Errorf("connects: %s, failures %v", m.summary(), m.get("gatewayd_mqtt_connect_failures_total"))
	}
}

// e. gatewayd is killed (or terminated) during an outage with a durable
// buffer, and started again before the broker comes back. Its readings wait
// on disk and seq numbers continue: exactly after a SIGTERM, above their
// leases (spool.SeqLease of readings at most) after a SIGKILL.
func TestRestartDuringOutage(t *testing.T) {
	for _, tc := range []struct {
		id, title string
		sig       syscall.Signal
	}{
		{"e1", "gatewayd SIGKILL during an outage, restarted (buffer.dir)", syscall.SIGKILL},
		{"e2", "gatewayd SIGTERM during an outage, restarted (buffer.dir)", syscall.SIGTERM},
	} {
		t.Run(tc.id, func(t *testing.T) { restartDuringOutage(t, tc.id, tc.title, tc.sig) })
	}
}

func restartDuringOutage(t *testing.T, id, title string, sig syscall.Signal) {
	row := newRow(t, id, title)
	r := newRig(t, "f"+id, autosaveShort, gwConfig{bufferDir: t.TempDir()})
	g1 := startGatewayd(t, r.config)
	if m := warmUp(g1); m.get("gatewayd_buffer_durable") != 1 {
		t.Fatalf("buffer not durable: %s", m.summary())
	}
	r.broker.stop(syscall.SIGTERM)
	g1.waitLog(time.Now().Add(-time.Second), 10*time.Second, "connection lost")
	takenAtLeast(g1, g1.scrape(), 2*float64(readingsPerSec)) // 2 s of readings on disk
	// The signal comes at a random moment of the durable buffer's commit
	// cycle (a commit when the oldest reading waiting is SpillAfter old)
	// and of the sensors' 100ms rounds.
	time.Sleep(rand.N(time.Second))
	pre := g1.scrape()
	stoppedAt := time.Now() // before the signal: gatewayd may log within the same millisecond
	g1.signal(sig)
	code := g1.wait(15 * time.Second)
	switch {
	case sig == syscall.SIGKILL && code != -1:
		t.Errorf("gatewayd exit code %d after SIGKILL", code)
	case sig == syscall.SIGTERM && code != 0:
		t.Errorf("gatewayd exited %d after SIGTERM, want 0", code)
	}
	if sig == syscall.SIGTERM {
		if _, ok := g1.findLog(stoppedAt, "readings kept on disk for the next start"); !ok {
			t.Error(`no "readings kept on disk for the next start" at shutdown`)
		}
	}
	checkCrashWarning(t, g1, false) // a new store
	row.counters(pre)               // the first process's counters, as last scraped
	row.note("taken and published: both processes, the first as last scraped before the %s", sigName(sig))

	g2 := startGatewayd(t, r.config)
	m2 := g2.scrape()
	kept := m2.get("gatewayd_buffer_messages")
	row.note("%v readings on disk at restart (%v buffered at the last scrape before the %s)",
		kept, pre.get("gatewayd_buffer_messages"), sigName(sig))
	if kept < pre.get("gatewayd_buffer_messages")-lossBound.Seconds()*float64(readingsPerSec) {
		t.Errorf("%v readings on disk at restart, %v were buffered before the %s", kept, pre.get("gatewayd_buffer_messages"), sigName(sig))
	}
	takenAtLeast(g2, m2, float64(readingsPerSec)) // the restarted gatewayd buffers too
	r.broker.start()
	row.reconnected(g2.reconnectedTo(r.broker))
	m, tl := r.finish(g2, row)
	checkCrashWarning(t, g2, sig == syscall.SIGKILL)
	if sig == syscall.SIGTERM {
		checkComplete(t, m, tl)
	}
	checkRestart(t, row, sig, false, pre, m, tl, compareRestart(t, r.sub, stoppedAt, g2.started))
}

// e3. gatewayd is killed while connected, with a durable buffer, and
// started again at once. Readings it took after its last commit may have
// reached the broker already; their seq numbers must not be given again:
// the restarted gatewayd jumps every seq ahead.
func TestSIGKILLWhileConnected(t *testing.T) {
	row := newRow(t, "e3", "gatewayd SIGKILL while connected, restarted at once (buffer.dir)")
	r := newRig(t, "fe3", autosaveShort, gwConfig{bufferDir: t.TempDir()})
	g1 := startGatewayd(t, r.config)
	warmUp(g1)
	time.Sleep(rand.N(time.Second)) // a random moment of the commit cycle
	pre := g1.scrape()
	g1.signal(syscall.SIGKILL)
	killedAt := time.Now()
	if code := g1.wait(15 * time.Second); code != -1 {
		t.Errorf("gatewayd exit code %d after SIGKILL", code)
	}
	checkCrashWarning(t, g1, false) // a new store
	row.counters(pre)
	row.note("taken and published: both processes, the first as last scraped before the SIGKILL")
	g2 := startGatewayd(t, r.config)
	row.Reconnect = g2.waitLog(g2.started, 20*time.Second, "connected").Time.Sub(killedAt).Round(time.Millisecond).String() + " from the kill"
	m, tl := r.finish(g2, row)
	checkCrashWarning(t, g2, true)
	checkRestart(t, row, syscall.SIGKILL, true, pre, m, tl, compareRestart(t, r.sub, killedAt, g2.started))
}

// crashWarning starts the line gatewayd logs when it opens a store that the
// last run left open (it crashed or was killed): the seq numbers jump.
const crashWarning = "the last run did not shut down cleanly"

// checkCrashWarning checks that the log of an exited gatewayd holds the
// warning about an unclean shutdown, at level WARN and naming the jump
// (spool.SeqLease), if and only if want.
func checkCrashWarning(t *testing.T, g *gatewayd, want bool) {
	t.Helper()
	g.mu.Lock()
	var found []logLine
	for _, l := range g.logs {
		if strings.HasPrefix(l.Msg, crashWarning) {
			found = append(found, l)
		}
	}
	g.mu.Unlock()
	pid := g.cmd.Process.Pid
	switch {
	case want && len(found) != 1:
		t.Errorf("gatewayd (pid %d) logged %q %d times after an unclean shutdown, want once", pid, crashWarning, len(found))
	case want && (found[0].Level != "WARN" || found[0].Lease != spool.SeqLease.String()):
		t.Errorf("gatewayd (pid %d): %q at level %s with lease %q, want WARN and %s", pid, found[0].Msg, found[0].Level, found[0].Lease, spool.SeqLease)
	case !want && len(found) > 0:
		t.Errorf("gatewayd (pid %d) logged %q without an unclean shutdown before", pid, found[0].Msg)
	}
}

// restartSeries compares, for one series, the readings of two processes.
type restartSeries struct {
	lastBefore, firstAfter uint64 // highest seq that arrived from before the stop, lowest from after the restart
	lastTime               time.Time
	unseen                 int // readings taken after lastTime by the first process that never arrived
}

type restartResult struct {
	series map[string]restartSeries
	// before: readings of the first process that arrived (taken before
	// the stop); unseen: restartSeries.unseen summed over the series;
	// worst: the longest time from the last reading of a series that
	// arrived to the stop.
	before, unseen int
	worst          time.Duration
}

// compareRestart splits each series' readings at the stop and the restart.
// Readings are 100ms apart, so the time from the last one that arrived to
// the stop tells how many were taken and never arrived, whatever their seq
// numbers were (at least: a round in the last 20ms is not counted).
func compareRestart(t *testing.T, sub *subscriber, stoppedAt, restartedAt time.Time) restartResult {
	t.Helper()
	res := restartResult{series: map[string]restartSeries{}}
	for k, times := range sub.seriesTimes() {
		var sr restartSeries
		for q, ts := range times {
			// Everything taken before the restart is the first process's:
			// after a SIGTERM it may still take a reading or two while it
			// stops its sensors.
			if ts.Before(restartedAt) {
				res.before++
				if q > sr.lastBefore {
					sr.lastBefore, sr.lastTime = q, ts
				}
			} else if ts.After(restartedAt) && (sr.firstAfter == 0 || q < sr.firstAfter) {
				sr.firstAfter = q
			}
		}
		if sr.lastBefore == 0 || sr.firstAfter == 0 {
			t.Errorf("%s: last seq before the stop %d, first after the restart %d", k, sr.lastBefore, sr.firstAfter)
			continue
		}
		gap := max(0, stoppedAt.Sub(sr.lastTime))
		res.worst = max(res.worst, gap)
		// Give or take the latency of a read and of the signal.
		sr.unseen = max(0, int((gap-20*time.Millisecond)/sensorInterval))
		res.unseen += sr.unseen
		res.series[k] = sr
	}
	return res
}

// checkRestart checks the seq numbers of every series across a restart
// with a durable buffer, and writes the row's lost column. first is the
// first process's last scrape before the signal, m the second's final one.
// lastBefore is the highest seq that arrived from the first process,
// firstAfter the lowest from the second; no seq may carry two readings or
// arrive after a higher one. The readings the first process took and that
// never arrived are counted twice, both times at least: from its counters
// (taken as last scraped, less those that arrived) and per series from the
// reading times (see compareRestart).
//
// After a SIGTERM the store was closed cleanly: firstAfter == lastBefore+1,
// nothing is missing, every reading the first process took arrived, and
// the last one was taken within about one sensor interval of the signal.
//
// After a SIGKILL the restarted gatewayd finds the store left open, and
// every series continues above its lease: a seq is published only once a
// lease covering it is on disk, and a lease reaches spool.SeqLease of the
// series' readings beyond the seq that renewed it. So:
//   - firstAfter > lastBefore: no seq is given again;
//   - firstAfter - lastBefore - 1 <= a lease's readings plus the readings
//     the first process took that never arrived (with half a second's
//     slack, those being counted at least);
//   - the gap (firstAfter - lastBefore - 1) is at least the number of
//     readings the first process took that never arrived (per series, and
//     summed over the series): the loss shows;
//   - those readings were taken within lossBound of the kill;
//   - no seq is missing outside the gap.
func checkRestart(t *testing.T, row *row, sig syscall.Signal, connected bool, first, m metricsSnap, tl tally, rs restartResult) {
	t.Helper()
	crashed := sig == syscall.SIGKILL
	const perSec = uint64(time.Second / sensorInterval) // readings per series per second
	leaseSeqs := uint64(math.Ceil(float64(perSec) * spool.SeqLease.Seconds()))
	if len(rs.series) != 2*numSensors {
		t.Errorf("readings of %d series arrived from both processes, want %d", len(rs.series), 2*numSensors)
	}
	if tl.Conflicts > 0 || tl.OutOfOrder > 0 {
		t.Errorf("subscriber: %s", tl)
	}
	if pub := m.get("gatewayd_mqtt_messages_published_total"); float64(tl.Distinct) < pub {
		t.Errorf("subscriber saw %d distinct readings, gatewayd had %v acknowledged", tl.Distinct, pub)
	}
	// The first process's readings that never arrived, from its counters.
	lost := max(0, int(first.get("gatewayd_readings_taken_total"))-rs.before)
	var (
		outside, inJump  int
		gaps             uint64
		minJump, maxJump uint64
		outsideBySeries  []string
		keys             = make([]string, 0, len(rs.series))
	)
	for k := range rs.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sr := rs.series[k]
		if sr.firstAfter <= sr.lastBefore {
			t.Errorf("%s: seq %d after the restart, the first process got to %d: seqs given again", k, sr.firstAfter, sr.lastBefore)
			continue
		}
		jump := sr.firstAfter - sr.lastBefore
		if minJump == 0 || jump < minJump {
			minJump = jump
		}
		maxJump = max(maxJump, jump)
		gaps += jump - 1
		if crashed {
			if jump-1 < uint64(sr.unseen) {
				t.Errorf("%s: seq %d after the restart, %d before: a gap of %d seqs, but %d readings of the first process never arrived",
					k, sr.firstAfter, sr.lastBefore, jump-1, sr.unseen)
			}
			// The lease reaches SeqLease of readings beyond the seq that
			// renewed it; the readings lost lie between (counted at least,
			// from the times: half a second more for the rest).
			hi := leaseSeqs + uint64(sr.unseen) + perSec/2 + 1
			if jump > hi {
				t.Errorf("%s: seq %d after the restart, %d before: a jump of %d, want at most %d (a lease of %d, %d readings lost; connected at the kill: %v)",
					k, sr.firstAfter, sr.lastBefore, jump, hi, leaseSeqs, sr.unseen, connected)
			}
		} else if jump != 1 {
			t.Errorf("%s: seq %d after the restart, %d before: after a SIGTERM seqs continue exactly", k, sr.firstAfter, sr.lastBefore)
		}
		var out []uint64
		for _, q := range tl.missing[k] {
			if q > sr.lastBefore && q < sr.firstAfter {
				inJump++
			} else {
				out = append(out, q)
			}
		}
		if len(out) > 0 {
			outside += len(out)
			outsideBySeries = append(outsideBySeries, k+": "+ranges(out))
		}
	}
	if outside > 0 {
		t.Errorf("%d seqs missing outside the gap between the two processes: %s", outside, strings.Join(outsideBySeries, "; "))
	}
	t.Logf("%s: per series the first seq after the restart is %d to %d above the last that arrived before; readings of the first process that never arrived: %d by its counters, %d by the times (the last %s before the %s); %s",
		sigName(sig), minJump, maxJump, lost, rs.unseen, rs.worst.Round(time.Millisecond), sigName(sig), tl)
	if !crashed {
		if lost > 0 {
			t.Errorf("SIGTERM: %d of the %v readings the first process had taken never arrived", lost, first.get("gatewayd_readings_taken_total"))
		}
		if rs.worst > 2*sensorInterval+100*time.Millisecond {
			t.Errorf("SIGTERM: the last reading that arrived was taken %s before the signal", rs.worst)
		}
		row.Lost = fmt.Sprintf("%d; seqs continue exactly after the restart (first seq after it = last that arrived + 1 on all %d series); the last reading that arrived was taken %s before the SIGTERM",
			tl.Missing, len(rs.series), rs.worst.Round(time.Millisecond))
		return
	}
	// The durable buffer writes a reading once it waited SpillAfter for
	// its acknowledgement: a crash may lose the readings of about the last
	// second, never more than lossBound.
	if rs.worst > lossBound {
		t.Errorf("SIGKILL lost more than the last %s: the last reading that arrived was taken %s before the kill", lossBound, rs.worst)
	}
	if uint64(lost) > gaps {
		t.Errorf("SIGKILL: %d readings of the first process never arrived, the seq gaps at the restart hold only %d seqs", lost, gaps)
	}
	jumps := fmt.Sprint(minJump)
	if maxJump != minJump {
		jumps = fmt.Sprintf("%d to %d", minJump, maxJump)
	}
	if n := max(lost, rs.unseen); n > 0 {
		row.Lost = fmt.Sprintf("%d readings of the first process, taken in the last %s before the kill, their seqs inside the jump", n, rs.worst.Round(time.Millisecond))
	} else {
		row.Lost = fmt.Sprintf("0 readings of the first process (the last that arrived was taken %s before the kill)", rs.worst.Round(time.Millisecond))
	}
	row.Lost += fmt.Sprintf("; seq jump at the restart: first seq after it = last that arrived + %s on all %d series (%d seqs missing in it); %d missing outside it",
		jumps, len(rs.series), inJump, outside)
}

// f. An outage longer than the buffer: the oldest readings are dropped and
// counted, the newest arrive.
func TestBufferOverflow(t *testing.T) {
	const maxMessages = 500
	row := newRow(t, "f", fmt.Sprintf("outage overflowing buffer.max_messages %d", maxMessages))
	r := newRig(t, "ff", autosaveShort, gwConfig{maxMessages: maxMessages})
	g := startGatewayd(t, r.config)
	warmUp(g)
	r.broker.stop(syscall.SIGTERM)
	g.waitLog(time.Now().Add(-time.Second), 10*time.Second, "connection lost")
	var highest float64
	g.waitMetrics(20*time.Second, "500 readings dropped", func(m metricsSnap) bool {
		highest = max(highest, m.get("gatewayd_buffer_messages"))
		return m.get("gatewayd_buffer_dropped_total") >= maxMessages
	})
	r.broker.start()
	row.reconnected(g.reconnectedTo(r.broker))
	m, tl := r.finish(g, row)
	checkReconnected(t, m)
	row.note("gatewayd_buffer_messages at most %v", highest)
	if highest > maxMessages {
		t.Errorf("gatewayd_buffer_messages reached %v > max_messages %d", highest, maxMessages)
	}
	if highest < maxMessages {
		t.Errorf("gatewayd_buffer_messages never reached max_messages (%v)", highest)
	}
	dropped := m.get("gatewayd_buffer_dropped_total")
	// Every dropped reading is missing at the subscriber, except those in
	// flight when the broker went away: the broker may have had them.
	if float64(tl.Missing) > dropped || dropped-float64(tl.Missing) > maxInflight {
		t.Errorf("%v dropped by gatewayd, %d missing at the subscriber", dropped, tl.Missing)
	}
	if tl.Conflicts > 0 || tl.OutOfOrder > 0 {
		t.Errorf("subscriber: %s", tl)
	}
	// What is missing is one run of the oldest readings of the outage; the
	// newest readings (the buffer's content) and everything after arrived.
	for k, miss := range tl.missing {
		if uint64(len(miss)) != miss[len(miss)-1]-miss[0]+1 {
			t.Errorf("%s: missing seqs are not one run: %s", k, ranges(miss))
		}
	}
	row.Lost = fmt.Sprintf("%d, all of them dropped by gatewayd as the oldest", tl.Missing)
	if d := int(dropped) - tl.Missing; d > 0 {
		row.note("%d dropped readings arrived all the same: they were in flight when the broker went", d)
	}
}

// g. A store that cannot be read is moved aside and gatewayd starts afresh.
func TestCorruptStore(t *testing.T) {
	row := newRow(t, "g", "corrupt buffer.db at start")
	dir := t.TempDir()
	garbage := bytes.Repeat([]byte("this is not a bbolt database\x00\xff"), 512)
	if err := os.WriteFile(filepath.Join(dir, "buffer.db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, "fg", autosaveShort, gwConfig{bufferDir: dir})
	g := startGatewayd(t, r.config)
	l := g.waitLog(g.started, 10*time.Second, "buffer store unreadable; moved aside, starting with an empty one")
	t.Logf("gatewayd: %s: %s", l.Msg, l.Err)
	moved, _ := filepath.Glob(filepath.Join(dir, "buffer.db.corrupt-*"))
	if len(moved) != 1 {
		t.Fatalf("moved-aside stores: %v", moved)
	}
	if b, err := os.ReadFile(moved[0]); err != nil || !bytes.Equal(b, garbage) {
		t.Errorf("%s does not hold the corrupt store (%v)", moved[0], err)
	}
	row.note("moved to %s", filepath.Base(moved[0]))
	m := warmUp(g)
	if m.get("gatewayd_buffer_corrupt_total") != 1 || m.get("gatewayd_buffer_durable") != 1 {
		t.Errorf("after a corrupt store: %s", m.summary())
	}
	m, tl := r.finish(g, row)
	checkComplete(t, m, tl)
}

// checkReconnected checks the counters of a gatewayd that lost its
// connection once and came back, with nothing dropped.
func checkReconnected(t *testing.T, m metricsSnap) {
	t.Helper()
	if m.get("gatewayd_mqtt_connects_total") < 2 || m.get("gatewayd_mqtt_connection_lost_total") < 1 {
		t.Errorf("no reconnect in the counters: %s", m.summary())
	}
}

// lossBound is the most of the last readings a SIGKILL may cost with a
// durable buffer: SpillAfter, plus the commit and a busy machine.
const lossBound = spool.DefaultSpillAfter + 500*time.Millisecond

// maxInflight is buffer.max_inflight (100): no case sets it.
var maxInflight = float64(config.Default().Buffer.MaxInflight)

// checkResent checks that no more was sent again than was in flight: at
// most buffer.max_inflight per lost connection (the publisher takes one of
// max_inflight slots before each publish and frees it at the PUBACK).
func checkResent(t *testing.T, m metricsSnap) {
	t.Helper()
	r, lost := m.get("gatewayd_mqtt_resent_total"), max(1, m.get("gatewayd_mqtt_connection_lost_total"))
	if r > maxInflight*lost {
		t.Errorf("resent %v, more than max_inflight (%v) per lost connection (%v lost)", r, maxInflight, lost)
	}
}

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}
