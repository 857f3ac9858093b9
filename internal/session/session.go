// Package session keeps gatewayd's one MQTT session to the broker: connect,
// reconnect with backoff, failover across broker URLs, availability (birth,
// last will, offline on shutdown), subscriptions, and publishing, over MQTT
// 3.1.1 (paho.mqtt.golang, paho3.go) or MQTT 5 (paho.golang, paho5.go),
// behind one small client interface (client.go). It is the only package of
// the daemon that imports an MQTT client; its users see Conn, Token and
// Message, the same on both protocols.
//
// Neither client's own reconnect is used. Each connection is a fresh
// client, so that nothing of a dead connection survives into the next one.
// The session tells its user (the publisher) that the connection is gone,
// and the user resends from its own ordered buffer. The broker keeps
// subscriptions and queued messages under the stable client id
// (clean_session: false).
package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
)

// Options are the session's settings, from the config file.
type Options struct {
	Broker        config.Broker
	URLs          []string // overrides Broker.URLs when set (embedded broker)
	Subscriptions []config.Subscription
	// OnMessage is called for every message that arrives on
	// Subscriptions (and for messages on no known filter, such as those of
	// a filter a persistent session still holds), from the client's
	// goroutine, in order. It must not block.
	OnMessage func(Message)

	// Protocol is the MQTT protocol level: 4 (3.1.1, the default) or 5.
	Protocol int
	// SessionExpiry is MQTT 5's session expiry interval: how long the
	// broker keeps the session while gatewayd is away (0:
	// DefaultSessionExpiry). With Broker.CleanSession it is 0.
	SessionExpiry time.Duration
	// MessageExpiry is MQTT 5's message expiry interval of the publishes
	// flagged Expiring (the readings); 0: none.
	MessageExpiry time.Duration
	// URLOrder is the order of failover: "ordered" (the default) or
	// "random", a shuffle seeded by GatewayID, so that a fleet spreads
	// over the nodes while each gateway keeps its own order.
	URLOrder string
	// GatewayID seeds URLOrder "random" (default: the client id).
	GatewayID string

	// Handlers are subscriptions whose messages go to their own function
	// (Home Assistant's homeassistant/status, say) instead of OnMessage.
	// A message on a filter of both kinds goes to both.
	Handlers []Handler
	// OnConnect, when set, is called with every new connection before
	// Current returns it to anyone, after the birth message was sent and
	// the subscriptions requested (in the background: the broker may not
	// have them yet): what it publishes reaches the broker before the
	// first reading of that connection. It may block (Current
	// waits), and may publish and wait for acknowledgements; it must
	// return when the connection is lost.
	OnConnect func(*Conn)
	// StateDir, when set, is where the session remembers the filters it
	// subscribed (mqtt-subscriptions.json), so that at the next start it
	// unsubscribes those the config no longer has, which a persistent
	// session would otherwise keep.
	StateDir string
}

// Handler is a subscription with its own message handler.
type Handler struct {
	Filter string
	QoS    byte
	// Handle is called, like OnMessage, from the client's goroutine, in
	// order; it must not block.
	Handle func(Message)
}

// DefaultSessionExpiry is MQTT 5's session expiry when none is set (SPEC:
// broker.session_expiry 168h).
const DefaultSessionExpiry = 168 * time.Hour

// Backoff bounds: the first retry comes after 50-100ms, so that a broker
// that restarts is back in well under a second; every failure doubles the
// delay, up to broker.reconnect_max_interval.
const (
	backoffInitial = 100 * time.Millisecond
	// stableAfter is how long a connection must last for the backoff to
	// start again from the beginning; a flapping broker keeps backing off.
	stableAfter = 10 * time.Second
)

// Session is the MQTT session. Create it with New, then Run it.
type Session struct {
	log  *slog.Logger
	m    *metrics.Metrics
	live *metrics.Liveness

	expiry atomic.Uint32 // MQTT 5 message expiry in seconds, for the clients
	routes atomic.Pointer[routes]

	mu         sync.Mutex
	opts       Options
	conn       *Conn
	changed    chan struct{} // closed, and replaced, at every change of conn
	updated    chan struct{} // closed, and replaced, at every Update
	lastGood   string        // the URL of the last connection
	assignedID string        // a client id the broker assigned
	// willQoS and willRetain are lowered when an MQTT 5 broker refused
	// the will (no QoS 1, no retained messages).
	willQoS    byte
	willRetain bool
	subs       *subscriptions
}

// New prepares a session; it does not connect. Errors concern the options
// (the TLS files, which are read again at every connect, must be readable
// now too).
func New(opts Options, log *slog.Logger, m *metrics.Metrics, live *metrics.Liveness) (*Session, error) {
	if err := check(&opts); err != nil {
		return nil, err
	}
	s := &Session{log: log, m: m, live: live, opts: opts, changed: make(chan struct{}), updated: make(chan struct{}),
		willQoS: 1, willRetain: true}
	s.subs = newSubscriptions(opts.StateDir, log)
	s.setRoutes(&opts)
	s.setExpiry(opts.MessageExpiry)
	m.MQTTConnected.Set(0)
	return s, nil
}

// check validates and completes opts.
func check(o *Options) error {
	if _, err := tlsConfig(o.Broker.TLS); err != nil {
		return err
	}
	switch o.Protocol {
	case 0:
		o.Protocol = 4
	case 4, 5:
	default:
		return fmt.Errorf("broker.protocol: %d is not 4 (MQTT 3.1.1) or 5", o.Protocol)
	}
	switch o.URLOrder {
	case "":
		o.URLOrder = "ordered"
	case "ordered", "random":
	default:
		return fmt.Errorf("broker.url_order: %q is not ordered or random", o.URLOrder)
	}
	if o.SessionExpiry <= 0 {
		o.SessionExpiry = DefaultSessionExpiry
	}
	if o.OnMessage == nil {
		o.OnMessage = func(Message) {}
	}
	return nil
}

func (s *Session) setExpiry(d time.Duration) {
	s.expiry.Store(uint32(min(max(d, 0)/time.Second, math.MaxUint32)))
}

// Current returns the open connection (nil while there is none) and a
// channel that is closed at the next change.
func (s *Session) Current() (*Conn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.changed
}

// Connected reports whether the session is open now. It is false while
// reconnecting.
func (s *Session) Connected() bool {
	c, _ := s.Current()
	return c != nil && !c.isLost()
}

func (s *Session) setConn(c *Conn) {
	s.mu.Lock()
	s.conn = c
	close(s.changed)
	s.changed = make(chan struct{})
	if c != nil {
		s.lastGood = c.url
	}
	s.mu.Unlock()
	if c != nil {
		s.m.MQTTConnected.Set(1)
	} else {
		s.m.MQTTConnected.Set(0)
	}
}

// Run connects and keeps the session up until ctx ends; then it publishes
// the availability "offline", disconnects and returns nil.
func (s *Session) Run(ctx context.Context) error {
	defer s.live.Done("session")
	failures := 0
	// ladder, when set, is the next delay after a spread first retry
	// failed (one URL): the fleet's retries keep the phases they drew.
	var ladder time.Duration
	for {
		s.live.Beat("session")
		opts, _ := s.options()
		key := keyOf(&opts)
		conn, err := s.connectAny(ctx, &opts, key)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if changed, _ := s.keyChanged(key); changed {
				continue // new settings: try them at once
			}
			maxDelay := opts.Broker.ReconnectMaxInterval.D()
			delay := backoff(failures, maxDelay)
			if ladder > 0 {
				delay, ladder = ladderStep(ladder, maxDelay)
			}
			failures++
			// The fast first retries are logged at debug, so that a broker
			// that is away for long writes one warning per retry interval.
			level := slog.LevelDebug
			if failures == 1 || delay >= maxDelay/2 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "cannot connect to the broker", "err", err, "attempt", failures, "retry_in", delay.Round(time.Millisecond).String())
			if !s.sleep(ctx, delay, key) {
				return nil
			}
			continue
		}
		ladder = 0
		s.connected(conn, &opts)

		switch s.waitLost(ctx, conn, key) {
		case stopped:
			s.shutdown(conn, &opts)
			return nil
		case reconfigured:
			s.reconnectForUpdate(conn, &opts)
			failures = 0
			continue
		}
		s.setConn(nil)
		s.subscriptionsEnded(conn)
		s.m.MQTTConnectionLost.Inc()
		if time.Since(conn.since) >= stableAfter {
			failures = 0
		}
		delay := backoff(failures, opts.Broker.ReconnectMaxInterval.D())
		if failures == 0 {
			urls := len(opts.urls())
			delay = firstRetry(urls, opts.Broker.ReconnectMaxInterval.D())
			if urls == 1 {
				ladder = min(restartSpread, opts.Broker.ReconnectMaxInterval.D())
			}
		}
		failures++
		s.log.Warn("connection lost", "broker", conn.url, "err", conn.Err(), "retry_in", delay.Round(time.Millisecond).String())
		if !s.sleep(ctx, delay, key) {
			return nil
		}
	}
}

// connected makes conn the current connection: birth, subscriptions, the
// OnConnect hook, and then Current.
func (s *Session) connected(conn *Conn, o *Options) {
	conn.since = time.Now()
	s.m.MQTTConnects.Inc()
	attrs := []any{"broker", conn.url, "client_id", s.clientID(o), "protocol", protocolName(conn.protocol), "session_present", conn.ack.sessionPresent}
	if conn.protocol == 5 {
		a := conn.ack
		attrs = append(attrs, "receive_maximum", a.receiveMaximum, "maximum_qos", a.maxQoS, "retain_available", !a.noRetain)
		if a.maxPacketSize > 0 {
			attrs = append(attrs, "maximum_packet_size", a.maxPacketSize)
		}
		if a.keepalive > 0 {
			attrs = append(attrs, "server_keepalive", a.keepalive.String())
		}
	}
	s.log.Info("connected", attrs...)
	if conn.ack.maxQoS < 2 {
		s.log.Warn("the broker takes publishes at QoS "+fmt.Sprint(conn.ack.maxQoS)+" at most; higher ones are sent at that QoS", "broker", conn.url)
	}
	if conn.ack.noRetain {
		s.log.Warn("the broker keeps no retained messages; publishes are sent without retain", "broker", conn.url)
	}
	if a := o.Broker.Availability; a.Topic != "" {
		tok := conn.Publish(a.Topic, 1, true, []byte(a.Online))
		go func() {
			if err := waitToken(tok, conn, o.Broker.Keepalive.D()); err != nil {
				s.log.Warn("cannot publish availability", "topic", a.Topic, "err", err)
			}
		}()
	}
	go func() {
		defer close(conn.subscribed)
		s.keepSubscribed(conn, o.Broker.CleanSession)
	}()
	if o.OnConnect != nil {
		o.OnConnect(conn)
	}
	s.setConn(conn)
}

func protocolName(p int) string {
	if p == 5 {
		return "5"
	}
	return "3.1.1"
}

// clientID is the client id to connect with.
func (s *Session) clientID(o *Options) string {
	if o.Broker.ClientID == "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.assignedID
	}
	return o.Broker.ClientID
}

// backoff is the delay before retry number n (0-based): exponential from
// backoffInitial, capped, with jitter in [d/2, d] so that many gateways
// restarted together do not hit the broker in step.
func backoff(n int, maxDelay time.Duration) time.Duration {
	d := backoffInitial
	for i := 0; i < n && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	return d/2 + rand.N(d/2+1)
}

// Spreading the retries after a connection that lasted was lost.
const (
	// failoverSpread: with several broker URLs, a lost connection most
	// likely means one node went away while the others serve: its share
	// of the fleet fails over within this (a cluster's node loss).
	failoverSpread = 100 * time.Millisecond
	// restartSpread: with one URL, the whole fleet lost the one broker
	// (a restart) and reconnects to it: the first retries are spread
	// over this (or reconnect_max_interval when smaller), so that a
	// restarted broker is not stormed. Measured with gatewayd-bench fleet
	// (docs/FLEET.md).
	restartSpread = time.Second
)

// firstRetry is the delay before the first attempt after a connection
// that lasted was lost, drawn uniformly from [0, spread] (full jitter).
func firstRetry(urls int, maxDelay time.Duration) time.Duration {
	spread := restartSpread
	if urls > 1 {
		spread = failoverSpread
	}
	spread = min(spread, maxDelay)
	return rand.N(spread + 1)
}

// ladderStep is the delay after a failed attempt that followed a spread
// first retry (one URL), and the step after it: the spread, then doubling
// up to maxDelay, the same for every gateway but for a jitter of 2.5 %.
// Each gateway so keeps the phase it drew for its first retry: whenever
// the broker comes back, the fleet arrives spread over the spread, as
// after a short restart. (Fresh jitter at every retry would make the
// gateways that came too early, during the restart, come back together.)
func ladderStep(step, maxDelay time.Duration) (delay, next time.Duration) {
	delay = step - step/40 + rand.N(step/20+1)
	return delay, min(2*step, maxDelay)
}

// sleep waits d, beating the liveness; false when ctx ended. An Update
// that changes the connection's settings (key) ends the wait early.
func (s *Session) sleep(ctx context.Context, d time.Duration, key connKey) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(metrics.BeatInterval)
	defer tick.Stop()
	for {
		changed, updated := s.keyChanged(key)
		if changed {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-updated:
		case <-tick.C:
			s.live.Beat("session")
		}
	}
}

type ending int

const (
	lost ending = iota
	stopped
	reconfigured
)

// waitLost waits until conn is lost, ctx ends, or an Update changed a
// setting of the connection (key is the connection's).
func (s *Session) waitLost(ctx context.Context, conn *Conn, key connKey) ending {
	tick := time.NewTicker(metrics.BeatInterval)
	defer tick.Stop()
	for {
		changed, updated := s.keyChanged(key)
		if changed {
			return reconfigured
		}
		select {
		case <-conn.lost:
			return lost
		case <-ctx.Done():
			return stopped
		case <-updated:
		case <-tick.C:
			s.live.Beat("session")
		}
	}
}

func waitToken(tok Token, c *Conn, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-c.lost:
		return errLost
	case <-t.C:
		return errTimeout
	}
}

// shutdown publishes "offline" (retained) and disconnects cleanly.
func (s *Session) shutdown(c *Conn, o *Options) {
	s.publishOffline(c, o)
	s.disconnect(c, errors.New("shut down"), "disconnected")
}

// disconnect ends c cleanly for reason: no longer current, a DISCONNECT,
// its subscriptions ended; then logs msg.
func (s *Session) disconnect(c *Conn, reason error, msg string) {
	c.markLost(reason)
	s.setConn(nil)
	c.client.disconnect()
	s.subscriptionsEnded(c)
	s.log.Info(msg, "broker", c.url)
}

// subscriptionsEnded waits until the subscriptions of c, a connection
// marked lost, are no longer kept, so that what they remember is settled
// before the next connection (or Run's return) and nothing of c changes it
// later. keepSubscribed returns as soon as its request sees the
// connection lost; the bound is for a write stuck on a dead link.
func (s *Session) subscriptionsEnded(c *Conn) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-c.subscribed:
	case <-t.C:
		s.log.Warn("the subscriptions of a lost connection did not end within 5s", "broker", c.url)
	}
}

func (s *Session) publishOffline(c *Conn, o *Options) {
	if a := o.Broker.Availability; a.Topic != "" && !c.isLost() {
		tok := c.Publish(a.Topic, 1, true, []byte(a.Offline))
		if err := waitToken(tok, c, 2*time.Second); err != nil {
			s.log.Warn("cannot publish availability offline", "err", err)
		}
	}
}
