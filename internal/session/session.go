// Package session keeps gatewayd's one MQTT session to the broker: connect,
// reconnect with backoff, failover across broker URLs, availability (birth,
// last will, offline on shutdown), subscriptions, and publishing. It is the
// only package that imports paho.mqtt.golang.
//
// paho's own reconnect is not used. Each connection is a fresh paho client
// with AutoReconnect off, so that nothing of a dead connection survives into
// the next one: paho's default store resends in map order after a reconnect,
// its QoS 0 publishes during a reconnect vanish with a nil error, and its
// publish tokens of a lost connection never complete. The session instead
// tells its user (the publisher) that the connection is gone, and the user
// resends from its own ordered buffer. The broker keeps subscriptions and
// queued messages under the stable client id (clean_session: false).
package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
)

// Message is one message that arrived on a subscription.
type Message struct {
	Topic     string
	QoS       byte
	Retained  bool
	Duplicate bool
	Payload   []byte
}

// Token tracks one publish: Done is closed when the broker acknowledged it
// (QoS 0: when it was written), or when it failed, and then Error tells.
// The token of a connection that was lost may never complete: wait on
// Conn.Lost too.
type Token interface {
	Done() <-chan struct{}
	Error() error
}

// Options are the session's settings, from the config file.
type Options struct {
	Broker        config.Broker
	URLs          []string // overrides Broker.URLs when set (embedded broker)
	Subscriptions []config.Subscription
	// OnMessage is called for every message that arrives, from paho's
	// goroutine, in order. It must not block.
	OnMessage func(Message)
}

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
	opts Options
	urls []string
	tls  *tls.Config
	log  *slog.Logger
	m    *metrics.Metrics
	live *metrics.Liveness

	mu      sync.Mutex
	conn    *Conn
	changed chan struct{} // closed, and replaced, at every change of conn
}

// New prepares a session; it does not connect. Errors concern the TLS files.
func New(opts Options, log *slog.Logger, m *metrics.Metrics, live *metrics.Liveness) (*Session, error) {
	s := &Session{opts: opts, urls: opts.Broker.URLs, log: log, m: m, live: live, changed: make(chan struct{})}
	if len(opts.URLs) > 0 {
		s.urls = opts.URLs
	}
	var err error
	if s.tls, err = tlsConfig(opts.Broker.TLS); err != nil {
		return nil, err
	}
	if s.opts.OnMessage == nil {
		s.opts.OnMessage = func(Message) {}
	}
	m.MQTTConnected.Set(0)
	return s, nil
}

// Current returns the open connection (nil while there is none) and a
// channel that is closed at the next change.
func (s *Session) Current() (*Conn, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn, s.changed
}

// Connected reports whether the session is open now. Unlike paho's
// IsConnected, it is false while reconnecting.
func (s *Session) Connected() bool {
	c, _ := s.Current()
	return c != nil && !c.isLost()
}

func (s *Session) setConn(c *Conn) {
	s.mu.Lock()
	s.conn = c
	close(s.changed)
	s.changed = make(chan struct{})
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
		conn, err := s.connectAny(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			maxDelay := s.opts.Broker.ReconnectMaxInterval.D()
			delay := backoff(failures, maxDelay)
			failures++
			// The fast first retries are logged at debug, so that a broker
			// that is away for long writes one warning per retry interval.
			level := slog.LevelDebug
			if failures == 1 || delay >= maxDelay/2 {
				level = slog.LevelWarn
			}
			s.log.Log(ctx, level, "cannot connect to the broker", "err", err, "attempt", failures, "retry_in", delay.Round(time.Millisecond).String())
			if !s.sleep(ctx, delay) {
				return nil
			}
			continue
		}
		since := time.Now()
		s.setConn(conn)
		s.m.MQTTConnects.Inc()
		s.log.Info("connected", "broker", conn.url, "client_id", s.opts.Broker.ClientID, "session_present", conn.sessionPresent)
		s.afterConnect(conn)

		if !s.waitLost(ctx, conn) {
			s.shutdown(conn)
			return nil
		}
		s.setConn(nil)
		s.m.MQTTConnectionLost.Inc()
		if time.Since(since) >= stableAfter {
			failures = 0
		}
		delay := backoff(failures, s.opts.Broker.ReconnectMaxInterval.D())
		failures++
		s.log.Warn("connection lost", "broker", conn.url, "err", conn.Err(), "retry_in", delay.Round(time.Millisecond).String())
		if !s.sleep(ctx, delay) {
			return nil
		}
	}
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

// sleep waits d, beating the liveness; false when ctx ended.
func (s *Session) sleep(ctx context.Context, d time.Duration) bool {
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
		case <-tick.C:
			s.live.Beat("session")
		}
	}
}

// waitLost waits until conn is lost (true) or ctx ends (false).
func (s *Session) waitLost(ctx context.Context, conn *Conn) bool {
	tick := time.NewTicker(metrics.BeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-conn.lost:
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
			s.live.Beat("session")
		}
	}
}

// connectAny tries every broker URL in order, once.
func (s *Session) connectAny(ctx context.Context) (*Conn, error) {
	var errs []error
	for _, u := range s.urls {
		c, err := s.connect(ctx, u)
		if err == nil {
			return c, nil
		}
		s.m.MQTTConnectFailures.Inc()
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// pingTimeout is how long paho waits for a PINGRESP. paho checks every
// keepalive/4 (at most every 5s) and pings after keepalive of silence; with
// this timeout a broker that stopped answering is noticed within 1.5 x
// keepalive.
func pingTimeout(keepalive time.Duration) time.Duration {
	return min(keepalive/4, 5*time.Second)
}

func (s *Session) connect(ctx context.Context, url string) (*Conn, error) {
	b := s.opts.Broker
	conn := &Conn{url: url, lost: make(chan struct{})}
	o := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(b.ClientID).
		SetCleanSession(b.CleanSession).
		SetKeepAlive(b.Keepalive.D()).
		SetPingTimeout(pingTimeout(b.Keepalive.D())).
		SetConnectTimeout(b.ConnectTimeout.D()).
		SetWriteTimeout(b.Keepalive.D()).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetStore(mqtt.NewMemoryStore()).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			s.opts.OnMessage(Message{Topic: m.Topic(), QoS: m.Qos(), Retained: m.Retained(), Duplicate: m.Duplicate(), Payload: m.Payload()})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { conn.markLost(err) })
	if b.Username != "" {
		o.SetUsername(b.Username)
	}
	if pw := b.Password.Reveal(); pw != "" {
		o.SetPassword(pw)
	}
	if s.tls != nil {
		o.SetTLSConfig(s.tls)
	}
	if a := b.Availability; a.Topic != "" {
		o.SetWill(a.Topic, a.Offline, 1, true)
	}
	client := mqtt.NewClient(o)
	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// paho cannot cancel a connect; close whatever it opens.
		go func() { <-tok.Done(); client.Disconnect(0) }()
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	conn.client = client
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		conn.sessionPresent = ct.SessionPresent()
	}
	return conn, nil
}

// afterConnect publishes the birth message and subscribes. Neither blocks
// the session: their results are logged when they come.
func (s *Session) afterConnect(c *Conn) {
	if a := s.opts.Broker.Availability; a.Topic != "" {
		tok := c.client.Publish(a.Topic, 1, true, a.Online)
		go func() {
			if err := waitToken(tok, c, s.opts.Broker.Keepalive.D()); err != nil {
				s.log.Warn("cannot publish availability", "topic", a.Topic, "err", err)
			}
		}()
	}
	if len(s.opts.Subscriptions) == 0 {
		return
	}
	filters := make(map[string]byte, len(s.opts.Subscriptions))
	for _, sub := range s.opts.Subscriptions {
		filters[sub.Topic] = byte(sub.QoS)
	}
	tok := c.client.SubscribeMultiple(filters, nil)
	go func() {
		err := waitToken(tok, c, s.opts.Broker.Keepalive.D())
		if err != nil {
			if c.isLost() {
				return // the next connection subscribes again
			}
			for f := range filters {
				s.m.MQTTSubscribeFailures.WithLabelValues(f).Inc()
			}
			s.log.Error("subscribe failed", "err", err)
			return
		}
		st := tok.(*mqtt.SubscribeToken)
		for f, q := range st.Result() {
			if q == 0x80 {
				s.m.MQTTSubscribeFailures.WithLabelValues(f).Inc()
				s.log.Error("the broker refused a subscription", "subscription", f)
				continue
			}
			s.log.Debug("subscribed", "subscription", f, "granted_qos", q)
		}
	}()
}

func waitToken(tok mqtt.Token, c *Conn, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-c.lost:
		return errors.New("connection lost")
	case <-t.C:
		return errors.New("no answer from the broker")
	}
}

// shutdown publishes "offline" (retained) and disconnects cleanly.
func (s *Session) shutdown(c *Conn) {
	if a := s.opts.Broker.Availability; a.Topic != "" && !c.isLost() {
		tok := c.client.Publish(a.Topic, 1, true, a.Offline)
		if err := waitToken(tok, c, 2*time.Second); err != nil {
			s.log.Warn("cannot publish availability offline", "err", err)
		}
	}
	c.markLost(errors.New("shut down"))
	s.setConn(nil)
	c.client.Disconnect(250)
	s.log.Info("disconnected", "broker", c.url)
}

// Conn is one open connection to the broker.
type Conn struct {
	url            string
	client         mqtt.Client
	sessionPresent bool

	lost     chan struct{}
	lostOnce sync.Once
	mu       sync.Mutex
	err      error
}

// Publish sends one message. payload must not be modified afterwards (paho
// does not copy it).
func (c *Conn) Publish(topic string, qos byte, retain bool, payload []byte) Token {
	return c.client.Publish(topic, qos, retain, payload)
}

// Lost is closed when the connection is gone; tokens of its publishes that
// have not completed by then never will.
func (c *Conn) Lost() <-chan struct{} { return c.lost }

// Err is why the connection was lost.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// URL is the broker this connection goes to.
func (c *Conn) URL() string { return c.url }

// Abort declares the connection dead, for a user that saw the broker stop
// acknowledging (a half-open link that TCP has not noticed yet). The
// session then reconnects.
func (c *Conn) Abort(reason error) {
	if c.markLost(reason) {
		go c.client.Disconnect(0)
	}
}

func (c *Conn) markLost(err error) bool {
	first := false
	c.lostOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.lost)
		first = true
	})
	return first
}

func (c *Conn) isLost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// tlsConfig builds the TLS settings for ssl://, tls://, mqtts:// and wss://.
func tlsConfig(t config.TLS) (*tls.Config, error) {
	if t == (config.TLS{}) {
		return nil, nil // paho then uses the system roots for TLS URLs
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
