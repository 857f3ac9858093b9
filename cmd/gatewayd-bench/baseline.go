package main

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// The baseline clients below are paho.mqtt.golang used bare, the way its
// README shows: no spool, no ordering or resending of their own, paho's own
// reconnect. gatewayd-bench measures gatewayd against them (same broker,
// same payloads, same QoS) and counts what arrives with the subscriber. They
// are benchmark code, outside the daemon (internal/session is the daemon's
// only importer of an MQTT client).

// BaselineOptions are the connection settings of a baseline client. What is
// not here is paho's default (auto-reconnect on, backoff from 1 s).
type BaselineOptions struct {
	URL      string
	ClientID string
	// CleanSession false keeps the session, as gatewayd does by default;
	// paho then also resends unacknowledged publishes after a reconnect.
	CleanSession bool
	// ConnectTimeout bounds the first connect (default 10 s).
	ConnectTimeout time.Duration
	// MaxReconnectInterval caps paho's reconnect backoff (0: paho's).
	MaxReconnectInterval time.Duration
	// Unordered lets paho run a subscriber's callback for several messages
	// at once (SetOrderMatters(false)).
	Unordered bool
}

func (o BaselineOptions) clientOptions() *mqtt.ClientOptions {
	opts := mqtt.NewClientOptions().
		AddBroker(o.URL).
		SetClientID(o.ClientID).
		SetCleanSession(o.CleanSession).
		SetOrderMatters(!o.Unordered)
	if o.MaxReconnectInterval > 0 {
		opts.SetMaxReconnectInterval(o.MaxReconnectInterval)
	}
	return opts
}

func (o BaselineOptions) connect(c mqtt.Client) error {
	timeout := o.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tok := c.Connect()
	if !tok.WaitTimeout(timeout) {
		c.Disconnect(0)
		return fmt.Errorf("connect to %s: no CONNACK within %s", o.URL, timeout)
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect to %s: %w", o.URL, err)
	}
	return nil
}

// BaselinePublisher publishes with at most a window of publishes awaiting
// their acknowledgement, like gatewayd's publisher with buffer.max_inflight
// (a token channel of that capacity and one goroutine waiting on the tokens
// in order). Waiting on every token instead would cut QoS 1 throughput to
// about 0.4x.
type BaselinePublisher struct {
	client mqtt.Client
	qos    byte
	window chan mqtt.Token
	done   chan struct{}

	published atomic.Uint64
	acked     atomic.Uint64
	failed    atomic.Uint64
}

// NewBaselinePublisher connects and returns a publisher that keeps at most
// window (at least 1) publishes in flight.
func NewBaselinePublisher(o BaselineOptions, qos byte, window int) (*BaselinePublisher, error) {
	c := mqtt.NewClient(o.clientOptions())
	if err := o.connect(c); err != nil {
		return nil, err
	}
	p := &BaselinePublisher{client: c, qos: qos, window: make(chan mqtt.Token, max(1, window)), done: make(chan struct{})}
	go p.acker()
	return p, nil
}

func (p *BaselinePublisher) acker() {
	defer close(p.done)
	for tok := range p.window {
		<-tok.Done()
		if tok.Error() != nil {
			p.failed.Add(1)
		} else {
			p.acked.Add(1)
		}
	}
}

// Publish sends one message, blocking while the window is full. payload
// must not be modified afterwards (paho does not copy it). Publish must not
// be called concurrently with itself or Close.
func (p *BaselinePublisher) Publish(topic string, payload []byte) {
	p.window <- p.client.Publish(topic, p.qos, false, payload)
	p.published.Add(1)
}

// Published is the number of Publish calls so far.
func (p *BaselinePublisher) Published() uint64 { return p.published.Load() }

// Acked is the number of publishes acknowledged (QoS 0: written).
func (p *BaselinePublisher) Acked() uint64 { return p.acked.Load() }

// Failed is the number of publishes whose token reported an error.
func (p *BaselinePublisher) Failed() uint64 { return p.failed.Load() }

// Close waits up to timeout for the outstanding acknowledgements, then
// disconnects. It reports an error when some were still missing.
func (p *BaselinePublisher) Close(timeout time.Duration) error {
	close(p.window)
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case <-p.done:
	case <-t.C:
		err = fmt.Errorf("%d publishes not acknowledged within %s", p.published.Load()-p.acked.Load()-p.failed.Load(), timeout)
	}
	p.client.Disconnect(100) // completes the tokens left with an error
	<-p.done
	return err
}

// BaselineSubscriber is a bare paho subscriber that (re)subscribes on every
// connect and hands each message to a callback on paho's goroutine, in
// order (unless Unordered), before paho acknowledges it.
type BaselineSubscriber struct {
	client mqtt.Client
}

// NewBaselineSubscriber connects, subscribes to filter and returns once the
// broker granted the subscription. onMessage must not block for long.
func NewBaselineSubscriber(o BaselineOptions, filter string, qos byte, onMessage func(topic string, payload []byte, at time.Time)) (*BaselineSubscriber, error) {
	subscribed := make(chan error, 1)
	var first atomic.Bool
	handler := func(_ mqtt.Client, m mqtt.Message) { onMessage(m.Topic(), m.Payload(), time.Now()) }
	opts := o.clientOptions().SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.Subscribe(filter, qos, handler)
		tok.Wait()
		err := tok.Error()
		if err == nil {
			if r := tok.(*mqtt.SubscribeToken).Result(); r[filter] == 0x80 {
				err = errors.New("the broker refused the subscription")
			}
		}
		if first.CompareAndSwap(false, true) {
			subscribed <- err
		}
	})
	c := mqtt.NewClient(opts)
	if err := o.connect(c); err != nil {
		return nil, err
	}
	select {
	case err := <-subscribed:
		if err != nil {
			c.Disconnect(0)
			return nil, fmt.Errorf("subscribe %s: %w", filter, err)
		}
	case <-time.After(10 * time.Second):
		c.Disconnect(0)
		return nil, fmt.Errorf("subscribe %s: no SUBACK within 10s", filter)
	}
	return &BaselineSubscriber{client: c}, nil
}

// Close disconnects.
func (s *BaselineSubscriber) Close() { s.client.Disconnect(100) }
