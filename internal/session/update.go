package session

import (
	"errors"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
)

// Update applies new options (a reload); opts is the whole of them, the
// OnMessage, OnConnect and handler functions included (a nil OnMessage
// drops the messages). Subscriptions and handlers added
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
	defer s.mu.Unlock()
	s.opts = opts
	s.setRoutes(&opts)
	s.setExpiry(opts.MessageExpiry)
	close(s.updated)
	s.updated = make(chan struct{})
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

// reconnectForUpdate ends c cleanly because its settings changed. When the
// availability topic changed, the old one is told "offline", so that it
// does not claim "online" for ever.
func (s *Session) reconnectForUpdate(c *Conn, old *Options) {
	now, _ := s.options()
	if now.Broker.Availability.Topic != old.Broker.Availability.Topic {
		s.publishOffline(c, old)
	}
	s.disconnect(c, errors.New("reconnecting with new settings"), "reconnecting with the new broker settings")
}
