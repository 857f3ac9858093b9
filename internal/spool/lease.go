package spool

import (
	"math"
	"time"
)

// Seq leases. A record's seq may reach the broker before the record is on
// disk (usually it never is), so after a crash the log cannot say which
// seqs were published. Instead, before a seq is published, a lease
// covering it is on disk: the last seq the series may use. A crashed run
// leaves its leases, and the next one continues above them, so a seq never
// stands for two readings. A lease reaches SeqLease of the series' readings
// ahead (at its rate measured between renewals), and is renewed, with one
// small commit for every series that needs it, when what it still covers
// falls below renewAhead of readings: the jump after a crash is at most
// the readings of SeqLease, plus those really lost. A clean close writes
// the exact last seqs, and numbering continues exactly.
const (
	// SeqLease is how many of a series' readings (at its rate) a lease
	// reserves beyond the seq that made it due.
	SeqLease = 10 * time.Second
	// renewAhead: a lease is renewed while it still covers this much of
	// the series' readings, so that the renewal is on disk before it is
	// needed and publishing never waits for it in steady state.
	renewAhead = 3 * time.Second
	// rateWindow is the shortest time over which a rate is measured.
	rateWindow = 200 * time.Millisecond
)

// lease is one series' lease.
type lease struct {
	durable uint64 // seqs up to this are covered by a lease on disk
	asked   uint64 // the lease being committed (0: none)
	want    bool   // due for renewal
	at      int64  // clock when the rate was last measured, or first seen
	atSeq   uint64 // the seq then
	rate    float64
}

// ahead is how many seqs a lease must still cover beyond the last one
// appended not to be due.
func (l *lease) ahead(lease time.Duration) uint64 {
	return max(1, uint64(math.Ceil(l.rate*lease.Seconds())))
}

// needLease updates the lease of r's key after r was appended; d.mu is
// held. A record whose seq the lease does not cover closes the gate (Peek
// returns nothing from it on) until the renewal is on disk. It reports
// whether the flusher must be woken.
func (d *Disk) needLease(r *Record) bool {
	l := d.leases[r.SeqKey]
	if l == nil {
		l = &lease{}
		d.leases[r.SeqKey] = l
	}
	if r.Seq > l.durable && d.gate == noGate && d.leasesOK {
		d.gate = r.ID
	}
	// A renewal under way counts: the gate opens when it is on disk.
	if covered := max(l.durable, l.asked); r.Seq <= covered && covered-r.Seq >= l.ahead(d.renewAhead) {
		return false
	}
	if l.want {
		return false
	}
	l.want = true
	first := !d.wantLease
	d.wantLease = true
	return first
}

// renewals appends to out the leases a commit now should carry and sets
// them as asked; d.mu is held. When one is due, every lease that covers
// less than half its length is renewed with it, so that series keep
// renewing together.
func (d *Disk) renewals(out []leaseEntry) []leaseEntry {
	if !d.wantLease || !d.leasesOK {
		return out
	}
	d.wantLease = false
	now := d.clock()
	for key, l := range d.leases {
		seq := d.seqs[key]
		if !l.want && (l.at == 0 || l.durable >= seq+(l.ahead(d.leaseFor)+1)/2) {
			continue // not due, or no reading of it in this run
		}
		l.want = false
		n := uint64(1)
		switch elapsed := time.Duration(now - l.at); {
		case l.at == 0:
			l.at, l.atSeq = now, seq
		case elapsed >= rateWindow && seq > l.atSeq:
			l.rate = float64(seq-l.atSeq) / elapsed.Seconds()
			l.at, l.atSeq = now, seq
		default: // the rate is not measured yet: grow with what came
			n = max(1, seq-min(seq, l.atSeq))
		}
		if l.rate > 0 {
			n = l.ahead(d.leaseFor)
		}
		l.asked = seq + n
		out = append(out, leaseEntry{key: key, seq: l.asked})
	}
	return out
}

// leased makes the leases of a commit durable; d.mu is held.
func (d *Disk) leased(ls []leaseEntry) {
	for _, e := range ls {
		if l := d.leases[e.key]; l != nil && l.asked == e.seq {
			l.durable, l.asked = e.seq, 0
		}
	}
	d.advanceGate()
}

// advanceGate moves the gate past the records whose seqs are covered now;
// d.mu is held.
func (d *Disk) advanceGate() {
	if d.gate == noGate {
		return
	}
	if !d.leasesOK {
		d.gate = noGate
		return
	}
	for d.gate = max(d.gate, d.memStart); d.gate < d.nextID; d.gate++ {
		e := d.mem.at(int(d.gate - d.memStart))
		if e.acked || e.rec.SeqKey == "" {
			continue
		}
		if l := d.leases[e.rec.SeqKey]; l == nil || e.rec.Seq > l.durable {
			return
		}
	}
	d.gate = noGate
}

// allLeases appends to out every lease as the log should hold it: exact
// when the spool closes, else the larger of the durable and the asked one.
func (d *Disk) allLeases(out []leaseEntry, exact bool) []leaseEntry {
	for key, l := range d.leases {
		seq := max(l.durable, l.asked)
		if exact {
			seq = d.seqs[key]
		}
		out = append(out, leaseEntry{key: key, seq: seq})
	}
	return out
}
