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
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
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
	// the subscriptions requested: what it publishes reaches the broker
	// before the first reading of that connection. It may block (Current
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

// Update applies new options (a reload). Subscriptions and handlers added
// are subscribed and those removed unsubscribed on the live connection; the
// next connections use the new set. When a setting of the connection
// differs (URLs, client id, credentials, TLS, keepalive, protocol,
// availability, session expiry, URL order), the session reconnects once
// with the new settings: at once when connected (the publisher then
// resends what was unacknowledged, so nothing is lost), and at its next
// attempt, without waiting for its backoff, during an outage. Update
// returns at once; it fails, changing nothing, only for invalid options.
func (s *Session) Update(opts Options) error {
	if err := check(&opts); err != nil {
		return err
	}
	s.mu.Lock()
	s.opts = opts
	close(s.updated)
	s.updated = make(chan struct{})
	s.mu.Unlock()
	s.setRoutes(&opts)
	s.setExpiry(opts.MessageExpiry)
	return nil
}

// options returns the current options and a channel closed at the next
// Update.
func (s *Session) options() (Options, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts, s.updated
}

// connKey is what a connection is made of: when it changes, the session
// reconnects.
type connKey struct {
	Broker        config.Broker
	URLs          []string
	Protocol      int
	SessionExpiry time.Duration
	URLOrder      string
	GatewayID     string
}

func keyOf(o *Options) connKey {
	return connKey{o.Broker, o.urls(), o.Protocol, o.SessionExpiry, o.URLOrder, o.GatewayID}
}

func (o *Options) urls() []string {
	if len(o.URLs) > 0 {
		return o.URLs
	}
	return o.Broker.URLs
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
	for {
		s.live.Beat("session")
		opts, updated := s.options()
		conn, err := s.connectAny(ctx, &opts, updated)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			if isClosed(updated) {
				continue // new settings: try them at once
			}
			maxDelay := opts.Broker.ReconnectMaxInterval.D()
			delay := backoff(failures, maxDelay)
			failures++
			// The fast first retries are logged at debug, so that a broker
			// that is away for long writes one warning per retry interval.
			level := slog.LevelDebug
			if failures == 1 || delay >= maxDelay/2 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "cannot connect to the broker", "err", err, "attempt", failures, "retry_in", delay.Round(time.Millisecond).String())
			if !s.sleep(ctx, delay, updated) {
				return nil
			}
			continue
		}
		s.connected(conn, &opts)

		switch s.waitLost(ctx, conn, keyOf(&opts)) {
		case stopped:
			s.shutdown(conn, &opts)
			return nil
		case reconfigured:
			s.reconnectForUpdate(conn, &opts)
			failures = 0
			continue
		}
		s.setConn(nil)
		s.m.MQTTConnectionLost.Inc()
		if time.Since(conn.since) >= stableAfter {
			failures = 0
		}
		delay := backoff(failures, opts.Broker.ReconnectMaxInterval.D())
		failures++
		s.log.Warn("connection lost", "broker", conn.url, "err", conn.Err(), "retry_in", delay.Round(time.Millisecond).String())
		if _, updated := s.options(); !s.sleep(ctx, delay, updated) {
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
	go s.keepSubscribed(conn, o.Broker.CleanSession)
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

// sleep waits d, beating the liveness; false when ctx ended. An Update
// (updated closed) ends the wait early.
func (s *Session) sleep(ctx context.Context, d time.Duration, updated <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(metrics.BeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-updated:
			return true
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
		opts, updated := s.options()
		if k := keyOf(&opts); !reflect.DeepEqual(k, key) {
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

// connectAny tries every broker URL once, starting from the one that
// worked last. It gives up early when ctx ends or updated is closed.
func (s *Session) connectAny(ctx context.Context, o *Options, updated <-chan struct{}) (*Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-updated:
			cancel()
		case <-ctx.Done():
		}
	}()
	s.mu.Lock()
	last := s.lastGood
	s.mu.Unlock()
	order := urlOrder(o)
	start := max(0, slices.Index(order, last))
	var errs []error
	for i := range order {
		u := order[(start+i)%len(order)]
		c, err := s.connect(ctx, u, o)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			break
		}
		s.m.MQTTConnectFailures.Inc()
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	if len(errs) == 0 {
		return nil, ctx.Err()
	}
	return nil, errors.Join(errs...)
}

// urlOrder is the order in which the URLs are tried: as configured, or
// shuffled with a seed of the gateway id (url_order random).
func urlOrder(o *Options) []string {
	urls := o.urls()
	if o.URLOrder != "random" || len(urls) < 2 {
		return urls
	}
	id := o.GatewayID
	if id == "" {
		id = o.Broker.ClientID
	}
	h := fnv.New64a()
	h.Write([]byte(id))
	seed := h.Sum64()
	out := slices.Clone(urls)
	rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// connect makes one attempt on one URL, within broker.connect_timeout.
func (s *Session) connect(ctx context.Context, rawURL string, o *Options) (*Conn, error) {
	b := o.Broker
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	tc, err := tlsConfig(b.TLS)
	if err != nil {
		return nil, err
	}
	pw, err := password(b)
	if err != nil {
		return nil, err
	}
	conn := newConn(rawURL, o.Protocol)
	p := &connectParams{
		url:            u,
		clientID:       s.clientID(o),
		cleanSession:   b.CleanSession,
		keepalive:      b.Keepalive.D(),
		connectTimeout: b.ConnectTimeout.D(),
		username:       b.Username,
		password:       pw,
		tls:            tc,
		sessionExpiry:  o.SessionExpiry,
		expiry:         &s.expiry,
		onMessage:      s.route,
		onLost:         func(err error) { conn.markLost(err) },
	}
	actx, cancel := context.WithTimeout(ctx, b.ConnectTimeout.D())
	defer cancel()
	var (
		cl  client
		ack connack
	)
	for {
		s.mu.Lock()
		if a := b.Availability; a.Topic != "" {
			p.will = &will{topic: a.Topic, payload: a.Offline, qos: s.willQoS, retain: s.willRetain}
		}
		s.mu.Unlock()
		cl, ack, err = protocols[o.Protocol](actx, p)
		if err == nil {
			break
		}
		// A broker without retained messages or QoS 1 refuses such a
		// will (MQTT 5 CONNACK 0x9a, 0x9b): say so, and ask for less.
		var ce *ConnackError
		if p.will == nil || !errors.As(err, &ce) || !s.lowerWill(ce.Code) {
			return nil, err
		}
		s.log.Warn("the broker refused the last will; connecting with a lesser one", "err", err)
	}
	conn.client, conn.ack = cl, ack
	if ack.assignedClientID != "" {
		s.mu.Lock()
		s.assignedID = ack.assignedClientID
		s.mu.Unlock()
		s.log.Info("the broker assigned a client id", "client_id", ack.assignedClientID)
	}
	return conn, nil
}

// lowerWill adapts the will to a CONNACK refusal; false when it cannot.
func (s *Session) lowerWill(code byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case code == 0x9a && s.willRetain:
		s.willRetain = false
	case code == 0x9b && s.willQoS > 0:
		s.willQoS = 0
	default:
		return false
	}
	return true
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
	c.markLost(errors.New("shut down"))
	s.setConn(nil)
	c.client.disconnect()
	s.log.Info("disconnected", "broker", c.url)
}

func (s *Session) publishOffline(c *Conn, o *Options) {
	if a := o.Broker.Availability; a.Topic != "" && !c.isLost() {
		tok := c.Publish(a.Topic, 1, true, []byte(a.Offline))
		if err := waitToken(tok, c, 2*time.Second); err != nil {
			s.log.Warn("cannot publish availability offline", "err", err)
		}
	}
}

// reconnectForUpdate ends c cleanly because its settings changed. When the
// availability topic changed, the old one is told "offline", so that it
// does not claim "online" for ever.
func (s *Session) reconnectForUpdate(c *Conn, old *Options) {
	now, _ := s.options()
	if now.Broker.Availability.Topic != old.Broker.Availability.Topic {
		s.publishOffline(c, old)
	}
	c.markLost(errors.New("reconnecting with new settings"))
	s.setConn(nil)
	c.client.disconnect()
	s.log.Info("reconnecting with the new broker settings", "broker", c.url)
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
