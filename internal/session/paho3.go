package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// client3 is an MQTT 3.1.1 connection through paho.mqtt.golang: one paho
// client per connection, with its own reconnect off, so that nothing of a
// dead connection survives into the next one (its default store resends in
// map order, its QoS 0 publishes during a reconnect vanish with a nil
// error, and its publish tokens of a lost connection never complete).
type client3 struct {
	c mqtt.Client

	mu sync.Mutex
	nc *bufConn // the network connection, from dial
}

// handoverTimeout bounds paho.mqtt.golang's hand-over of a publish or
// subscribe to its writer goroutine (its WriteTimeout).
const handoverTimeout = 2 * time.Second

// pingTimeout is how long a client waits for a PINGRESP. It pings after
// keepalive of silence; with this timeout a broker that stopped answering
// is noticed within 1.5 x keepalive.
func pingTimeout(keepalive time.Duration) time.Duration {
	return min(keepalive/4, 5*time.Second)
}

func connect3(ctx context.Context, p *connectParams) (client, connack, error) {
	cl := &client3{}
	o := mqtt.NewClientOptions().
		AddBroker(p.url.String()).
		// Only 3.1.1: without an explicit version paho retries a failed
		// handshake as MQTT 3.1 ("MQIsdp"), with a fresh connect_timeout.
		SetProtocolVersion(4).
		SetClientID(p.clientID).
		SetCleanSession(p.cleanSession).
		SetKeepAlive(p.keepalive).
		SetPingTimeout(pingTimeout(p.keepalive)).
		SetConnectTimeout(p.connectTimeout).
		// paho hands a publish to its writer through a channel and waits
		// up to WriteTimeout; bufConn takes every write at once, so the
		// hand-over takes microseconds, except in a race of paho's: a
		// publish that checked the client connected while the connection
		// was being lost waits for a writer that has stopped. Bounded
		// here, it fails after 2 s (and the publisher resends on the
		// next connection) instead of holding the publisher, and a
		// SIGTERM, for a keepalive (seen in gatewayd-bench fleet).
		SetWriteTimeout(handoverTimeout).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetOrderMatters(true).
		SetStore(noStore{}).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			nc, err := dial(ctx, u, p.tls, writeTimeout(p))
			if err != nil {
				return nil, err
			}
			cl.mu.Lock()
			cl.nc = nc
			cl.mu.Unlock()
			return nc, nil
		}).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			p.onMessage(Message{Topic: m.Topic(), QoS: m.Qos(), Retained: m.Retained(), Duplicate: m.Duplicate(), Payload: m.Payload()})
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { p.onLost(err) })
	if p.username != "" {
		o.SetUsername(p.username)
	}
	if p.password != "" {
		o.SetPassword(p.password)
	}
	if w := p.will; w != nil {
		o.SetWill(w.topic, w.payload, w.qos, w.retain)
	}
	cl.c = mqtt.NewClient(o)
	tok := cl.c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// paho cannot cancel a connect; close what it opened.
		go func() { <-tok.Done(); cl.c.Disconnect(0) }()
		cl.close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, connack{}, fmt.Errorf("no CONNACK within %s", p.connectTimeout)
		}
		return nil, connack{}, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, connack{}, fmt.Errorf("no CONNACK within %s (%w)", p.connectTimeout, err)
		}
		return nil, connack{}, err
	}
	ack := connack{maxQoS: 2}
	if ct, ok := tok.(*mqtt.ConnectToken); ok {
		ack.sessionPresent = ct.SessionPresent()
	}
	return cl, ack, nil
}

func (c *client3) publish(topic string, qos byte, retain bool, _ Flags, payload []byte) Token {
	return c.c.Publish(topic, qos, retain, payload)
}

func (c *client3) subscribe(ctx context.Context, filters []Filter) ([]byte, error) {
	m := make(map[string]byte, len(filters))
	for _, f := range filters {
		m[f.Topic] = f.QoS
	}
	tok := c.c.SubscribeMultiple(m, nil)
	if err := wait3(ctx, tok); err != nil {
		return nil, err
	}
	res := tok.(*mqtt.SubscribeToken).Result()
	codes := make([]byte, len(filters))
	for i, f := range filters {
		code, ok := res[f.Topic]
		if !ok {
			code = 0x80
		}
		codes[i] = code
	}
	return codes, nil
}

func (c *client3) unsubscribe(ctx context.Context, filters []string) error {
	return wait3(ctx, c.c.Unsubscribe(filters...))
}

func wait3(ctx context.Context, tok mqtt.Token) error {
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return errNoAnswer(ctx)
	}
}

// errNoAnswer is the error of a request whose answer did not come before
// ctx ended.
func errNoAnswer(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errTimeout
	}
	return fmt.Errorf("no answer from the broker: %w", ctx.Err())
}

// errTimeout: the broker did not answer a request in time.
var errTimeout = errors.New("no answer from the broker in time")

func (c *client3) disconnect() {
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	if nc != nil {
		nc.lingerOnClose(closeLinger)
	}
	c.c.Disconnect(250)
	if nc != nil {
		nc.waitEnded(closeFlushWait + closeLinger)
	}
}

func (c *client3) close() {
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	if nc != nil {
		nc.abort() // paho notices, and reports the connection lost
	}
	go c.c.Disconnect(0)
}

// noStore is paho's message store for a client that lives for one
// connection: paho keeps every QoS 1 and 2 publish in its store until the
// acknowledgement, only to send them again when the same client resumes a
// session. A client here never resumes (the publisher sends again, in
// order, what the spool still holds), so the store keeps nothing and saves
// a map insert and delete, under a lock, per publish.
type noStore struct{}

func (noStore) Open()                             {}
func (noStore) Put(string, packets.ControlPacket) {}
func (noStore) Get(string) packets.ControlPacket  { return nil }
func (noStore) All() []string                     { return nil }
func (noStore) Del(string)                        {}
func (noStore) Close()                            {}
func (noStore) Reset()                            {}
