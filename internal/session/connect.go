package session

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/url"
	"reflect"
	"slices"
)

// Handshake and failover: each (re)connect tries every URL once, starting
// from the one that worked last, one attempt of broker.connect_timeout
// each.

// connectAny tries every broker URL once, starting from the one that
// worked last. It gives up early when ctx ends or an Update changes the
// connection's settings (key).
func (s *Session) connectAny(ctx context.Context, o *Options, key connKey) (*Conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		for {
			changed, updated := s.keyChanged(key)
			if changed {
				cancel()
				return
			}
			select {
			case <-updated:
			case <-ctx.Done():
				return
			}
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
		if i < len(order)-1 {
			s.log.Info("cannot connect to a broker URL; trying the next", "broker", u, "err", err)
		}
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

// keyChanged reports whether the connection settings now differ from key,
// and returns a channel closed at the next Update.
func (s *Session) keyChanged(key connKey) (bool, <-chan struct{}) {
	opts, updated := s.options()
	return !reflect.DeepEqual(keyOf(&opts), key), updated
}
