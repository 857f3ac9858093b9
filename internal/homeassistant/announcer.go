package homeassistant

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/internal/session"
)

// Conn is a connection to the broker as the session hands it over
// (*session.Conn).
type Conn interface {
	PublishWith(topic string, qos byte, retain bool, flags session.Flags, payload []byte) session.Token
	Lost() <-chan struct{}
}

// publish sends m retained at QoS 1; on MQTT 5 a config says it is JSON
// (content type), and never expires (no message expiry: it is retained for
// Home Assistant's next start).
func publish(c Conn, m Message) session.Token {
	var flags session.Flags
	if len(m.Payload) > 0 {
		flags = session.JSON
	}
	return c.PublishWith(m.Topic, 1, true, flags, m.Payload)
}

// Announcer sends the discovery messages: every config after each connect
// (OnConnect, before the first reading of that connection), again when
// Home Assistant says "online" on its status topic (HandleStatus), the
// config of a series the moment its first reading is taken (Observe), the
// clearing of removed sensors at a reload (Reload), and the gateway's
// diagnostics every few seconds when they changed (Run).
//
// Discovery messages are not readings: they go straight to the current
// connection, never through the buffer, and are not counted as published
// readings. While there is no connection nothing is queued: the next
// connect sends everything anyway, so an outage does not pile them up.
// Only the clearing of removed sensors waits for the next connection.
type Announcer struct {
	log     *slog.Logger
	diag    func() Diagnostics
	timeout time.Duration // how long an acknowledgement may take
	every   time.Duration // DiagnosticsInterval; shorter in tests
	jitter  time.Duration // birthJitter; shorter in tests

	mu      sync.Mutex
	cat     *Catalog
	conn    Conn      // the latest connection (it may be lost by now)
	clears  []Message // clearing messages not yet acknowledged
	diagFor Conn      // the connection the last diagnostics went out on
	diagWas Diagnostics

	seen sync.Map      // "sensor/quantity" -> state topic; the fast path of Observe
	wake chan struct{} // Run: send everything again (birth, reload)

	// OnSent, if set, is called with the number of discovery messages a
	// burst handed to the broker (for a metric).
	OnSent func(n int)
}

// Timing of the Announcer.
const (
	// window is how many discovery messages may await their PUBACK at
	// once: 20,000 series go out in about a second without taking more
	// than a few of paho's 65,535 message ids.
	window = 256
	// DiagnosticsInterval is how often the gateway's diagnostics are
	// looked at; they are published when they changed.
	DiagnosticsInterval = 5 * time.Second
	// birthJitter spreads the answers of many gateways to one Home
	// Assistant restart.
	birthJitter = time.Second
)

// NewAnnouncer returns an announcer of cfg. diag reports the gateway's
// diagnostics; timeout bounds the wait for acknowledgements
// (broker.keepalive: a live broker answers within it).
func NewAnnouncer(cfg Config, diag func() Diagnostics, timeout time.Duration, log *slog.Logger) *Announcer {
	return &Announcer{log: log, diag: diag, timeout: timeout, every: DiagnosticsInterval, jitter: birthJitter,
		cat: NewCatalog(cfg), wake: make(chan struct{}, 1)}
}

// StatusTopic is the topic to subscribe to, with HandleStatus as its
// handler.
func (a *Announcer) StatusTopic() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cat.cfg.StatusTopic()
}

// OnConnect sends every discovery message on c: the clearing of removed
// sensors, the configs, the diagnostics. It returns when the broker
// acknowledged them all or c was lost, so that called before the publisher
// sees c, the configs reach the broker before the first reading of the
// connection.
func (a *Announcer) OnConnect(c Conn) {
	a.mu.Lock()
	a.conn = c
	snap := a.cat.Snapshot()
	a.mu.Unlock()
	a.sendAll(c, snap, "connect")
}

// sendAll sends the pending clears, then every config of snap, then the
// diagnostics, on c.
func (a *Announcer) sendAll(c Conn, snap Snapshot, reason string) {
	start := time.Now()
	a.mu.Lock()
	clears := slices.Clone(a.clears)
	a.mu.Unlock()
	n, err := a.send(c, concat(slices.Values(clears), snap.Messages()))
	if n >= len(clears) {
		a.mu.Lock()
		a.dropClears(clears)
		a.mu.Unlock()
	}
	if a.OnSent != nil {
		a.OnSent(n)
	}
	if err != nil {
		a.log.Warn("home assistant discovery interrupted; it is sent again on the next connection", "reason", reason, "sent", n, "err", err)
		return
	}
	a.publishDiagnostics(c, true)
	a.log.Info("home assistant discovery sent", "reason", reason, "configs", n-len(clears), "cleared", len(clears),
		"took", time.Since(start).Round(time.Millisecond).String())
}

// dropClears forgets the clears that were acknowledged. a.mu is held.
func (a *Announcer) dropClears(done []Message) {
	sent := make(map[string]bool, len(done))
	for _, m := range done {
		sent[m.Topic] = true
	}
	var kept []Message
	for _, m := range a.clears {
		if !sent[m.Topic] {
			kept = append(kept, m)
		}
	}
	a.clears = kept
}

var errLost = errors.New("connection lost")

// send publishes msgs retained at QoS 1, at most window awaiting their
// acknowledgement at a time, and waits for the last ones. It returns how
// many were acknowledged.
func (a *Announcer) send(c Conn, msgs iter.Seq[Message]) (int, error) {
	batch := make([]session.Token, 0, window)
	acked := 0
	flush := func() error {
		for _, t := range batch {
			if err := a.await(c, t); err != nil {
				return err
			}
			acked++
		}
		batch = batch[:0]
		return nil
	}
	for m := range msgs {
		batch = append(batch, publish(c, m))
		if len(batch) == window {
			if err := flush(); err != nil {
				return acked, err
			}
		}
	}
	return acked, flush()
}

func (a *Announcer) await(c Conn, t session.Token) error {
	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-c.Lost():
		return errLost
	case <-timer.C:
		return errors.New("no acknowledgement from the broker")
	}
}

// Observe records that a reading of the series key ("sensor/quantity")
// goes to topic. The first reading of a series, or one on a new topic,
// announces the series at once on the current connection, before the
// reading is put in the buffer: the config reaches the broker before the
// reading. Without a connection, the next connect announces it. Observe is
// called for every reading; the common case costs one map lookup.
func (a *Announcer) Observe(key, topic string) {
	if t, ok := a.seen.Load(key); ok && t.(string) == topic {
		return
	}
	sensor, quantity, ok := strings.Cut(key, "/")
	if !ok {
		return
	}
	a.mu.Lock()
	if _, configured := a.cat.sensors[sensor]; !configured {
		a.mu.Unlock()
		return // removed by a reload; not remembered, so that a sensor added again is announced
	}
	m, announce, err := a.cat.Observe(sensor, quantity, topic)
	a.seen.Store(key, topic)
	c := a.conn
	a.mu.Unlock()
	if err != nil {
		a.log.Error("cannot announce a series to home assistant", "sensor", sensor, "quantity", quantity, "err", err)
		return
	}
	if !announce || c == nil {
		return
	}
	// Not waited for: a lost connection sends it again at the next connect.
	publish(c, m)
	if a.OnSent != nil {
		a.OnSent(1)
	}
	a.log.Debug("home assistant discovery sent", "reason", "new series", "topic", m.Topic)
}

// HandleStatus takes a message from Home Assistant's status topic: "online"
// means it (re)started and lost what it knew, so everything is sent again
// within a second or so. A retained "online" comes with the subscription,
// just after the connect that already sent everything, and is ignored.
// It never blocks (it runs on the MQTT client's goroutine).
func (a *Announcer) HandleStatus(m session.Message) {
	if m.Retained || strings.TrimSpace(string(m.Payload)) != "online" {
		return
	}
	a.log.Info("home assistant came online; announcing again", "topic", m.Topic)
	select {
	case a.wake <- struct{}{}:
	default: // one is pending already
	}
}

// Reload applies a new config: the configs of removed sensors are cleared
// (an empty retained message on each of their discovery topics), and
// everything is sent again, by Run, on the current connection; without
// one, at the next connect.
func (a *Announcer) Reload(cfg Config) {
	a.mu.Lock()
	clears := a.cat.Reload(cfg)
	// A topic announced again (a sensor removed, then added back before
	// its clearing went out) must not be cleared after all.
	var kept []Message
	for _, m := range append(a.clears, clears...) {
		if !a.cat.announces(m.Topic) {
			kept = append(kept, m)
		}
	}
	a.clears = kept
	a.seen.Clear() // topics may have changed; the next reading of each series looks again
	a.mu.Unlock()
	a.log.Info("home assistant discovery reloaded", "cleared", len(clears))
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Run sends everything again when woken by HandleStatus or Reload, and the
// gateway's diagnostics every DiagnosticsInterval when they changed, until
// ctx ends.
func (a *Announcer) Run(ctx context.Context) error {
	tick := time.NewTicker(a.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.wake:
			select { // a short, random delay: many gateways answer one birth
			case <-ctx.Done():
				return nil
			case <-time.After(rand.N(a.jitter + 1)):
			}
			a.mu.Lock()
			c, snap := a.conn, a.cat.Snapshot()
			a.mu.Unlock()
			if c != nil && !isClosed(c.Lost()) {
				a.sendAll(c, snap, "home assistant online or reload")
			}
		case <-tick.C:
			a.mu.Lock()
			c := a.conn
			a.mu.Unlock()
			if c != nil && !isClosed(c.Lost()) {
				a.publishDiagnostics(c, false)
			}
		}
	}
}

// publishDiagnostics publishes the gateway's diagnostics on c when they
// changed, when c is a new connection, or when force is set. Not waited
// for: the next change or connection sends them again.
func (a *Announcer) publishDiagnostics(c Conn, force bool) {
	d := a.diag()
	a.mu.Lock()
	same := a.diagFor == c && a.diagWas == d
	if !force && same {
		a.mu.Unlock()
		return
	}
	a.diagFor, a.diagWas = c, d
	m := a.cat.cfg.DiagnosticsMessage(d)
	a.mu.Unlock()
	publish(c, m)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func concat(seqs ...iter.Seq[Message]) iter.Seq[Message] {
	return func(yield func(Message) bool) {
		for _, s := range seqs {
			for m := range s {
				if !yield(m) {
					return
				}
			}
		}
	}
}
