package spool

// pending is a ring of the records a durable spool holds in memory (not
// committed), in ID order. Unlike a slice it needs no copying when a
// commit takes records off its front, however far the flusher lags.
type pending struct {
	buf  []memEntry // len is 0 or a power of two
	head int
	n    int
}

type memEntry struct {
	rec     Record
	at      int64 // Disk.clock at the Append
	acked   bool  // gone: acked or dropped
	written bool  // in the commit under way
}

const minPending = 256

func (p *pending) len() int { return p.n }

// at returns entry i, 0 being the oldest.
func (p *pending) at(i int) *memEntry { return &p.buf[(p.head+i)&(len(p.buf)-1)] }

func (p *pending) push(e memEntry) {
	if p.n == len(p.buf) {
		bigger := make([]memEntry, max(2*len(p.buf), minPending))
		for i := range p.n {
			bigger[i] = *p.at(i)
		}
		p.buf, p.head = bigger, 0
	}
	*p.at(p.n) = e
	p.n++
}

// pop removes the k oldest entries.
func (p *pending) pop(k int) {
	for i := range k {
		*p.at(i) = memEntry{} // let go of the payload
	}
	p.head = (p.head + k) & (len(p.buf) - 1)
	p.n -= k
	if p.n == 0 && len(p.buf) > maxBatch {
		*p = pending{} // give a burst's memory back
	}
}
