package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The fleet scenario: -fleet real gatewayd processes (ids fleet-0001...,
// each its own metrics port and its own tap in front of the broker) against
// one mosquitto of its own (persistence on, so that a SIGTERM loses
// nothing; no connection limit), which is restarted -fleet-restarts times.
// It reports how long until every gateway is back, how the reconnects fall
// into 100 ms buckets (a storm shows as one full bucket), the readings
// lost, and the fleet's CPU and memory. docs/FLEET.md holds the figures.

// fleetGw is one gateway of the fleet.
type fleetGw struct {
	id      string
	tap     *tap
	c       *child
	metrics string
}

// fleetRestart is what one broker restart showed.
type fleetRestart struct {
	down, up time.Time
	back     []time.Duration // per gateway: broker accepting -> its first CONNACK
	buckets  []int           // CONNACKs per 100 ms after up
}

func (r fleetRestart) busiest() int { return slices.Max(append([]int{0}, r.buckets...)) }

func (b *bench) fleet() error {
	o := b.o
	n := o.fleetN
	if err := raiseNofile(uint64(4*n + 256)); err != nil {
		return err
	}
	dir := filepath.Join(b.dir, "fleet")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	br, err := startMosquitto(dir, b.log, true)
	if err != nil {
		return fmt.Errorf("fleet broker: %w", err)
	}
	defer br.close()
	sub, err := newFleetSub("tcp://" + br.addr())
	if err != nil {
		return fmt.Errorf("fleet subscriber: %w", err)
	}
	defer sub.close()

	gws := make([]*fleetGw, 0, n)
	defer func() {
		var wg sync.WaitGroup
		for _, g := range gws {
			wg.Add(1)
			go func() { defer wg.Done(); g.c.kill(); g.tap.close() }()
		}
		wg.Wait()
	}()
	// launch (re)starts g's gatewayd on a metrics port that was free a
	// moment ago.
	launch := func(g *fleetGw) error {
		var err error
		if g.metrics, err = freeAddr(); err != nil {
			return err
		}
		cfg := gwConfig{run: g.id, root: "fleet", url: g.tap.url(), metrics: g.metrics, sensors: 1, interval: time.Second,
			qos: 1, window: o.window, reconnectMax: o.fleetReconnectMax}
		path := filepath.Join(dir, g.id+".yaml")
		if err := os.WriteFile(path, cfg.yaml(), 0o644); err != nil {
			return err
		}
		g.c, err = startChild(g.id, b.gatewayd, "-config", path)
		return err
	}
	start := time.Now()
	for i := range n {
		g := &fleetGw{id: fmt.Sprintf("fleet-%04d", i+1)}
		if g.tap, err = newTap(br.addr(), "fleet/"); err != nil {
			return err
		}
		if err := launch(g); err != nil {
			g.tap.close()
			return err
		}
		gws = append(gws, g)
	}
	// Every gateway delivers before anything is measured. One whose
	// metrics port was taken in the meantime (by a tap of a later gateway:
	// the kernel hands out the same free ports) starts again on another.
	relaunched := 0
	for deadline := time.Now().Add(60*time.Second + time.Duration(n)*100*time.Millisecond); ; {
		missing := 0
		for _, g := range gws {
			if g.c.exited() && strings.Contains(g.c.out.String(), "address already in use") && relaunched < n {
				relaunched++
				if err := launch(g); err != nil {
					return err
				}
			}
			if g.c.exited() {
				return fmt.Errorf("%s exited: %s", g.id, g.c.out.String())
			}
			if sub.delivered(g.id) == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d gateways delivered nothing within %s", missing, n, time.Since(start).Round(time.Second))
		}
		if err := b.sleep(100 * time.Millisecond); err != nil {
			return err
		}
	}
	b.log.Info("fleet up", "gateways", n, "took", time.Since(start).Round(time.Millisecond), "relaunched", relaunched)

	// Steady state: the fleet's cost while every gateway is connected.
	// It also lets every connection outlast the session's stableAfter
	// (10 s): the first retry after losing a connection that lasted is
	// the one spread for a fleet.
	settle := 11 * time.Second
	steadyFrom, err := sampleAll(gws)
	if err != nil {
		return err
	}
	if err := b.sleep(settle); err != nil {
		return err
	}
	steadyTo, err := sampleAll(gws)
	if err != nil {
		return err
	}

	var restarts []fleetRestart
	var restartCPU []time.Duration
	for rep := range o.fleetRestarts {
		if rep > 0 {
			if err := b.sleep(settle); err != nil {
				return err
			}
		}
		before, err := sampleAll(gws)
		if err != nil {
			return err
		}
		r := fleetRestart{down: time.Now()}
		if r.up, err = br.restart(); err != nil {
			return err
		}
		// Every gateway's first CONNACK after the broker is back.
		for deadline := r.up.Add(60 * time.Second); ; {
			r.back = r.back[:0]
			for _, g := range gws {
				if a, ok := g.tap.firstConnackAfter(r.down); ok {
					r.back = append(r.back, max(0, a.Sub(r.up)))
				}
			}
			if len(r.back) == n {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("restart %d: %d of %d gateways back within 60s", rep+1, len(r.back), n)
			}
			if err := b.sleep(20 * time.Millisecond); err != nil {
				return err
			}
		}
		// A second more, for any gateway that connects again.
		if err := b.sleep(time.Second); err != nil {
			return err
		}
		after, err := sampleAll(gws)
		if err != nil {
			return err
		}
		restartCPU = append(restartCPU, totalCPU(after)-totalCPU(before))
		for _, g := range gws {
			g.tap.mu.Lock()
			for _, a := range g.tap.connacks {
				if a.After(r.down) {
					i := int(max(0, a.Sub(r.up)) / (100 * time.Millisecond))
					for len(r.buckets) <= i {
						r.buckets = append(r.buckets, 0)
					}
					r.buckets[i]++
				}
			}
			g.tap.mu.Unlock()
		}
		restarts = append(restarts, r)
		b.log.Info("fleet restart", "n", rep+1, "all_back", slices.Max(r.back), "buckets", r.buckets)
	}

	// The end: what each gateway took, then SIGTERM (it drains), then
	// everything taken must have arrived.
	taken := make([]uint64, n)
	for i, g := range gws {
		if taken[i], err = scrapeCounter("http://"+g.metrics+"/metrics", "gatewayd_readings_taken_total"); err != nil {
			return fmt.Errorf("%s: %w", g.id, err)
		}
	}
	var stopErrs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range gws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.c.stop(20 * time.Second); err != nil {
				mu.Lock()
				stopErrs = append(stopErrs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(stopErrs) > 0 {
		return errors.Join(stopErrs...)
	}
	lost := func() (lost uint64, gaps uint64) {
		for i, g := range gws {
			d, gp := sub.seen(g.id)
			lost += max(gp, taken[i]-min(taken[i], d))
			gaps += gp
		}
		return lost, gaps
	}
	var lostN, gapN uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		if lostN, gapN = lost(); lostN == 0 || time.Now().After(deadline) {
			break
		}
		if err := b.sleep(100 * time.Millisecond); err != nil {
			return err
		}
	}

	// The report.
	sc := fmt.Sprintf("fleet (%d gatewayd, 1 sensor @1s each, one mosquitto restarted %d times, reconnect_max_interval %s)",
		n, len(restarts), o.fleetReconnectMax)
	var allBack []time.Duration
	var busiest []float64
	for i, r := range restarts {
		allBack = append(allBack, slices.Max(r.back))
		busiest = append(busiest, 100*float64(r.busiest())/float64(n))
		b.note("fleet restart %d: broker down %s; reconnects per 100 ms after it accepted: %s", i+1,
			r.up.Sub(r.down).Round(time.Millisecond), bucketsString(r.buckets))
	}
	slices.Sort(busiest)
	b.add(row{scenario: sc, figure: "all back (broker accepts -> last CONNACK), median of restarts", unit: "ms", gw: ms(median(allBack)), paho: none, py: none})
	b.add(row{scenario: sc, figure: "all back, worst", unit: "ms", gw: ms(slices.Max(allBack)), paho: none, py: none})
	var firsts []time.Duration
	for _, r := range restarts {
		firsts = append(firsts, r.back...)
	}
	b.add(row{scenario: sc, figure: "a gateway back (broker accepts -> its CONNACK), median", unit: "ms", gw: ms(median(firsts)), paho: none, py: none})
	medBusiest := busiest[len(busiest)/2]
	b.goal(row{scenario: sc, figure: "busiest 100 ms of reconnects, % of the fleet, median of restarts", unit: "%", gw: medBusiest, paho: none, py: none},
		medBusiest <= 15, "<= 15 %")
	b.add(row{scenario: sc, figure: "busiest 100 ms of reconnects, % of the fleet, worst restart", unit: "%", gw: busiest[len(busiest)-1], paho: none, py: none})
	b.goal(row{scenario: sc, figure: "readings lost (taken, never delivered)", unit: "readings", gw: float64(lostN), paho: none, py: none},
		lostN == 0, "0")
	if gapN > 0 {
		b.note("fleet: %d seq gaps at the subscriber", gapN)
	}
	steadyWin := steadyTo[0].at.Sub(steadyFrom[0].at)
	var cpuPer, rss []float64
	for i := range gws {
		cpuPer = append(cpuPer, (steadyTo[i].cpu-steadyFrom[i].cpu).Seconds()/steadyWin.Seconds()*100)
		rss = append(rss, mib(steadyTo[i].rss))
	}
	slices.Sort(cpuPer)
	slices.Sort(rss)
	sum := func(v []float64) (s float64) {
		for _, x := range v {
			s += x
		}
		return s
	}
	b.add(row{scenario: sc, figure: "CPU per gateway, steady (2 readings/s), median", unit: "%", gw: cpuPer[len(cpuPer)/2], paho: none, py: none})
	b.add(row{scenario: sc, figure: "CPU of the fleet, steady, % of one core", unit: "%", gw: sum(cpuPer), paho: none, py: none})
	b.add(row{scenario: sc, figure: "CPU of the fleet per restart (down -> all back + 1 s)", unit: "s", gw: median(restartCPU).Seconds(), paho: none, py: none})
	b.add(row{scenario: sc, figure: "RSS per gateway, median", unit: "MiB", gw: rss[len(rss)/2], paho: none, py: none})
	b.add(row{scenario: sc, figure: "RSS per gateway, largest", unit: "MiB", gw: rss[len(rss)-1], paho: none, py: none})
	b.add(row{scenario: sc, figure: "RSS of the fleet", unit: "MiB", gw: sum(rss), paho: none, py: none})
	return nil
}

func bucketsString(bs []int) string {
	parts := make([]string, len(bs))
	for i, v := range bs {
		parts[i] = strconv.Itoa(v)
	}
	return strings.Join(parts, " ")
}

func sampleAll(gws []*fleetGw) ([]usage, error) {
	us := make([]usage, len(gws))
	for i, g := range gws {
		u, err := sample(g.c.pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w (%s)", g.id, err, g.c.out.String())
		}
		us[i] = u
	}
	return us, nil
}

func totalCPU(us []usage) (d time.Duration) {
	for _, u := range us {
		d += u.cpu
	}
	return d
}

// raiseNofile raises this process's open-file limit to its hard limit (the
// children inherit it: mosquitto holds a socket per gateway, this tool
// three) and fails when that is below need.
func raiseNofile(need uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return err
		}
	}
	if l.Cur < need {
		return fmt.Errorf("fleet: the open-file limit is %d, %d needed (ulimit -n)", l.Cur, need)
	}
	return nil
}

// fleetSub is the fleet's witness: a persistent QoS 1 subscriber on
// fleet/#, that keeps per topic every seq that arrived.
type fleetSub struct {
	sub *BaselineSubscriber

	mu   sync.Mutex
	seqs map[string]map[string]map[uint64]bool // gateway -> topic -> seq
}

func newFleetSub(url string) (*fleetSub, error) {
	s := &fleetSub{seqs: map[string]map[string]map[uint64]bool{}}
	var err error
	s.sub, err = NewBaselineSubscriber(BaselineOptions{URL: url, ClientID: "fleet-subscriber",
		MaxReconnectInterval: 500 * time.Millisecond, Unordered: true},
		"fleet/#", 1, func(topic string, payload []byte, _ time.Time) { s.onMessage(topic, payload) })
	return s, err
}

func (s *fleetSub) close() { s.sub.Close() }

func (s *fleetSub) onMessage(topic string, payload []byte) {
	rest, ok := strings.CutPrefix(topic, "fleet/")
	if !ok {
		return
	}
	gw, _, _ := strings.Cut(rest, "/")
	v, ok := field(payload, `"seq":`)
	if !ok {
		return
	}
	seq, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	topics := s.seqs[gw]
	if topics == nil {
		topics = map[string]map[uint64]bool{}
		s.seqs[gw] = topics
	}
	seen := topics[topic]
	if seen == nil {
		seen = map[uint64]bool{}
		topics[topic] = seen
	}
	seen[seq] = true
}

// delivered is the number of distinct readings of gw that arrived.
func (s *fleetSub) delivered(gw string) uint64 {
	d, _ := s.seen(gw)
	return d
}

// seen returns gw's distinct readings and the seqs missing below the
// highest of each topic.
func (s *fleetSub) seen(gw string) (distinct, gaps uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seqs := range s.seqs[gw] {
		var top uint64
		for q := range seqs {
			top = max(top, q)
		}
		distinct += uint64(len(seqs))
		gaps += top - uint64(len(seqs))
	}
	return distinct, gaps
}
