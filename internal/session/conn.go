package session

import (
	"errors"
	"fmt"
	"sync"
	"time"
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
// An error that is a *RefusedError is a refusal, which a resend would
// meet again; any other error means the connection failed. The token of a
// connection that was lost may never complete: wait on Conn.Lost too.
type Token interface {
	Done() <-chan struct{}
	Error() error
}

// Flags describe a publish's payload to MQTT 5, which sends them as
// properties; MQTT 3.1.1 has no place for them and ignores them.
type Flags uint8

const (
	// JSON: the payload is JSON (content type application/json).
	JSON Flags = 1 << iota
	// Expiring: publish.message_expiry applies (readings, not the
	// availability or discovery messages, which must stay retained).
	Expiring
)

// RefusedError is a publish the broker refused: an MQTT 5 PUBACK (or
// PUBREC) with a reason code of 0x80 or more. Local is set when gatewayd
// refused it itself because the broker could not take it (larger than its
// Maximum Packet Size), without sending it. A refusal repeats: the publish
// must be dropped, not retried. MQTT 3.1.1 has no refusals: a broker that
// denies a publish acknowledges it and drops it.
type RefusedError struct {
	Code   byte   // MQTT 5 reason code, e.g. 0x87 not authorized
	Reason string // the broker's reason string; may be empty
	Local  bool
}

func (e *RefusedError) Error() string {
	who := "the broker"
	if e.Local {
		who = "gatewayd"
	}
	s := fmt.Sprintf("%s refused the publish: %s (0x%02x)", who, ReasonName(e.Code), e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Name is the reason code's name, the label of
// gatewayd_mqtt_publish_refused_total.
func (e *RefusedError) Name() string { return ReasonName(e.Code) }

// errLost completes the tokens a lost connection cut off.
var errLost = errors.New("connection lost")

// token is the Token of the clients that do not bring their own.
type token struct {
	done chan struct{}
	err  error
}

func newToken() *token { return &token{done: make(chan struct{})} }

// doneToken is a token completed already.
func doneToken(err error) *token {
	t := &token{done: make(chan struct{}), err: err}
	close(t.done)
	return t
}

func (t *token) Done() <-chan struct{} { return t.done }

// Error is valid once Done is closed.
func (t *token) Error() error { return t.err }

// complete must be called once.
func (t *token) complete(err error) {
	t.err = err
	close(t.done)
}

// Conn is one open connection to the broker.
type Conn struct {
	url      string
	client   client
	protocol int
	ack      connack
	since    time.Time

	lost     chan struct{}
	lostOnce sync.Once
	// subscribed is closed when the connection's keepSubscribed has
	// returned (it does soon after lost closes).
	subscribed chan struct{}
	mu         sync.Mutex
	err        error
}

func newConn(url string, protocol int) *Conn {
	return &Conn{url: url, protocol: protocol, lost: make(chan struct{}), subscribed: make(chan struct{})}
}

// Publish sends one message. payload must not be modified afterwards (the
// clients do not copy it).
func (c *Conn) Publish(topic string, qos byte, retain bool, payload []byte) Token {
	return c.PublishWith(topic, qos, retain, 0, payload)
}

// PublishWith is Publish with flags that describe the payload (MQTT 5
// properties). Within the broker's CONNACK limits: a QoS above its Maximum
// QoS is lowered to it, and retain is dropped where the broker has no
// retained messages (both logged at connect).
func (c *Conn) PublishWith(topic string, qos byte, retain bool, flags Flags, payload []byte) Token {
	qos = min(qos, c.ack.maxQoS)
	if c.ack.noRetain {
		retain = false
	}
	return c.client.publish(topic, qos, retain, flags, payload)
}

// ReceiveMaximum is how many QoS 1 and 2 publishes the broker accepts in
// flight on this connection (MQTT 5 Receive Maximum); 0 means no limit
// (MQTT 3.1.1). A user that keeps a window of publishes keeps it at most
// this wide. The connection never exceeds it: a publish beyond it (the
// session's own, such as the availability, come on top of the user's)
// waits in PublishWith for an acknowledgement or the connection's end.
func (c *Conn) ReceiveMaximum() int { return c.ack.receiveMaximum }

// Protocol is the MQTT protocol level: 4 (3.1.1) or 5.
func (c *Conn) Protocol() int { return c.protocol }

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

// SessionPresent reports whether the broker still held the session.
func (c *Conn) SessionPresent() bool { return c.ack.sessionPresent }

// Abort declares the connection dead, for a user that saw the broker stop
// acknowledging (a half-open link that TCP has not noticed yet). The
// session then reconnects.
func (c *Conn) Abort(reason error) {
	if c.markLost(reason) {
		go c.client.close()
	}
}

// markLost closes lost once; it reports whether this call did.
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
