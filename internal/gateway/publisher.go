package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// Publisher takes records from the spool to the broker, oldest first, with
// at most maxInflight unacknowledged at a time. A record leaves the spool
// only when its PUBACK came. When a connection is lost, everything that was
// in flight on it is sent again, in order, on the next one: the broker sees
// every reading at least once, and the order of each series is kept. A
// reading the broker refuses (MQTT 5) leaves the spool too, counted as
// refused: a refusal repeats, so retrying it would block its series.
type Publisher struct {
	q     spool.Queue
	sess  *session.Session
	m     *metrics.Metrics
	log   *slog.Logger
	live  *metrics.Liveness
	stall atomic.Int64 // ns: an ack that takes longer means a dead link (SetStall)

	slots    chan struct{} // one per publish awaiting its acknowledgement
	freed    chan struct{} // a value after a slot was freed and at most wakeAt remain taken
	wakeAt   atomic.Int64  // -1 while the sender does not wait for slots
	inflight chan flight
	refusals refusalLog
}

type flight struct {
	id    uint64
	topic string
	tok   session.Token
	conn  *session.Conn
	sent  time.Time
}

// batchSize is how many records the sender takes from the spool at once.
const batchSize = 64

// NewPublisher returns a publisher for q over sess. stall is how long the
// oldest unacknowledged publish may wait before the connection is declared
// dead (broker.keepalive: a live broker answers a ping within it).
func NewPublisher(q spool.Queue, sess *session.Session, maxInflight int, stall time.Duration, m *metrics.Metrics, log *slog.Logger, live *metrics.Liveness) *Publisher {
	p := &Publisher{q: q, sess: sess, m: m, log: log, live: live,
		slots: make(chan struct{}, maxInflight), freed: make(chan struct{}, 1), inflight: make(chan flight, maxInflight)}
	p.wakeAt.Store(-1)
	p.SetStall(stall)
	return p
}

// SetStall changes how long an acknowledgement may take (broker.keepalive
// changed by a reload).
func (p *Publisher) SetStall(d time.Duration) { p.stall.Store(int64(d)) }

// Run publishes until ctx ends. What is in flight then stays in the spool.
func (p *Publisher) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.acker(ctx)
	}()
	p.sender(ctx)
	<-done
	return nil
}

// sender publishes records in ID order on the current connection.
func (p *Publisher) sender(ctx context.Context) {
	defer p.live.Done("publisher")
	var (
		cursor  uint64 // last ID sent on conn
		maxSent uint64 // highest ID ever sent: anything at or below is a resend
		conn    *session.Conn
		buf     = make([]spool.Record, 0, batchSize)
	)
	beat := time.NewTicker(metrics.BeatInterval)
	defer beat.Stop()
	p.live.Beat("publisher")
	for {
		cur, changed := p.sess.Current()
		if cur != conn {
			conn, cursor = cur, 0 // a new connection: start again from the oldest
		}
		var recs []spool.Record
		// At most maxInflight unacknowledged, and no more than the
		// broker's Receive Maximum (MQTT 5).
		limit := cap(p.slots)
		if conn != nil && conn.ReceiveMaximum() > 0 {
			limit = min(limit, conn.ReceiveMaximum())
		}
		if conn != nil && !isClosed(conn.Lost()) {
			recs = p.q.Peek(cursor, buf)
		}
		if len(recs) == 0 {
			var lost <-chan struct{}
			if conn != nil {
				lost = conn.Lost()
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-lost:
			case <-p.q.Notify():
			case <-beat.C:
				p.live.Beat("publisher")
			}
			continue
		}
		now := time.Now() // one clock read a batch; again after waiting
	batch:
		for i := range recs {
			r := &recs[i]
			// Take a slot before publishing, so that at most limit
			// publishes are ever unacknowledged. Only the sender adds
			// slots, so below limit (<= cap) the send cannot block.
			// A full window waits until an eighth of it is free: the
			// acker wakes the sender once for that many acks, not for
			// each, and the publishes go out together.
			if len(p.slots) >= limit {
				low := limit - max(1, limit/8)
				p.wakeAt.Store(int64(low))
				for len(p.slots) > low {
					select {
					case <-p.freed:
					case <-conn.Lost():
						p.wakeAt.Store(-1)
						break batch
					case <-ctx.Done():
						return
					}
				}
				p.wakeAt.Store(-1)
				now = time.Now()
			}
			p.slots <- struct{}{}
			flags := session.Expiring
			if isJSON(r.Payload) {
				flags |= session.JSON
			}
			tok := conn.PublishWith(r.Topic, r.QoS, r.Retain, flags, r.Payload)
			if r.ID <= maxSent {
				p.m.MQTTResent.Inc()
			} else {
				maxSent = r.ID
			}
			cursor = r.ID
			p.inflight <- flight{id: r.ID, topic: r.Topic, tok: tok, conn: conn, sent: now} // never blocks: slots bound it
		}
		clear(recs) // drop references to payloads that may be acked soon
	}
}

// acker waits for the acknowledgements in the order of sending, which is
// the order a broker answers in.
func (p *Publisher) acker(ctx context.Context) {
	defer p.live.Done("publisher-acks")
	st := &stallTimer{t: time.NewTimer(time.Hour)}
	st.t.Stop()
	defer st.t.Stop()
	beat := time.NewTicker(metrics.BeatInterval)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-p.inflight:
			ok := p.await(ctx, f, st, beat)
			<-p.slots
			if int64(len(p.slots)) <= p.wakeAt.Load() {
				select {
				case p.freed <- struct{}{}:
				default:
				}
			}
			if !ok {
				return
			}
		case <-beat.C:
			p.live.Beat("publisher-acks")
		}
	}
}

// stallTimer fires when the publish awaited may have waited too long. It is
// armed once and left running across publishes that are acknowledged in
// time (flights are awaited in the order sent, so a deadline armed for an
// earlier one is never later than the current one's); when it fires, the
// current publish's age decides.
type stallTimer struct {
	t     *time.Timer
	armed bool
}

// await waits for one publish; false when ctx ended.
func (p *Publisher) await(ctx context.Context, f flight, stall *stallTimer, beat *time.Ticker) bool {
	select {
	case <-f.tok.Done(): // acknowledged already: no clock, no timer
		p.settle(f)
		return true
	default:
	}
	wait := time.Duration(p.stall.Load())
	if !stall.armed {
		stall.t.Reset(max(0, wait-time.Since(f.sent)))
		stall.armed = true
	}
	for {
		select {
		case <-f.tok.Done():
			p.settle(f)
			return true
		case <-f.conn.Lost():
			if isClosed(f.tok.Done()) {
				p.settle(f) // its outcome came before the end
				return true
			}
			p.m.MQTTPublishFailures.Inc() // kept, and sent again on the next connection
			return true
		case <-stall.t.C:
			stall.armed = false
			wait = time.Duration(p.stall.Load())
			if left := wait - time.Since(f.sent); left > 0 {
				stall.t.Reset(left) // armed for an earlier publish
				stall.armed = true
				continue
			}
			// One warning per stall: the other publishes in flight on
			// the same connection find it lost already.
			if !isClosed(f.conn.Lost()) {
				p.log.Warn("the broker stopped acknowledging; reconnecting", "waited", wait, "broker", f.conn.URL())
				f.conn.Abort(errors.New("no acknowledgement within broker.keepalive"))
			}
		case <-beat.C:
			p.live.Beat("publisher-acks")
		case <-ctx.Done():
			return false
		}
	}
}

// settle acts on the outcome of a completed publish.
func (p *Publisher) settle(f flight) {
	err := f.tok.Error()
	var refused *session.RefusedError
	switch {
	case err == nil:
		if p.q.Ack(f.id) {
			p.m.MQTTPublished.Inc()
		}
	case errors.As(err, &refused):
		// Dropped, not retried: the broker would refuse it again, and
		// the readings behind it must not wait for ever.
		if p.q.Ack(f.id) {
			p.m.MQTTPublishRefused.WithLabelValues(refused.Name()).Inc()
			p.refusals.log(p.log, f.topic, refused)
		}
	default:
		p.m.MQTTPublishFailures.Inc()
		// The record stays in the spool; resending it in order needs a
		// fresh start of the sender, i.e. a new connection.
		f.conn.Abort(fmt.Errorf("publish failed: %w", err))
	}
}

// refusalLog logs refusals: the first of each topic and reason at warn,
// then at most one a minute for it, with the count of those not logged.
type refusalLog struct {
	mu   sync.Mutex
	last map[refusalKey]*refusalSeen
}

type refusalKey struct {
	topic string
	code  byte
}

type refusalSeen struct {
	at      time.Time
	skipped int
}

// refusalLogEntries bounds the topics remembered.
const refusalLogEntries = 10000

func (l *refusalLog) log(log *slog.Logger, topic string, e *session.RefusedError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil || len(l.last) >= refusalLogEntries {
		l.last = map[refusalKey]*refusalSeen{}
	}
	k := refusalKey{topic, e.Code}
	seen := l.last[k]
	now := time.Now()
	if seen != nil && now.Sub(seen.at) < time.Minute {
		seen.skipped++
		return
	}
	attrs := []any{"topic", topic, "reason", e.Name(), "reason_string", e.Reason, "local", e.Local}
	if seen != nil && seen.skipped > 0 {
		attrs = append(attrs, "also_refused_since_last_log", seen.skipped)
	}
	log.Warn("the broker refused a reading; dropped", attrs...)
	l.last[k] = &refusalSeen{at: now}
}

// Drain waits until the spool is empty or ctx ends, for a clean shutdown;
// it reports how many records are left. A durable spool keeps its records
// for the next start, so it is not waited for while no broker is connected.
func (p *Publisher) Drain(ctx context.Context) int {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		n := p.q.Len()
		if n == 0 || p.q.Durable() && !p.sess.Connected() {
			return n
		}
		select {
		case <-ctx.Done():
			return p.q.Len()
		case <-t.C:
		}
	}
}

// isJSON tells the payload formats apart (publish.format): a json payload
// is an object, a value payload a number. One byte, so the spool need not
// carry the format, and records from before a restart or a reload of
// publish.format are told right.
func isJSON(payload []byte) bool { return len(payload) > 0 && payload[0] == '{' }

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
