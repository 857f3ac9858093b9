package session

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// client5 is an MQTT 5 connection through paho.golang's paho client (not
// autopaho, whose reconnect the session replaces, as it replaces
// paho.mqtt.golang's). It brings its own session state (state5), so that
// a publish returns a Token at once, as with 3.1.1, instead of blocking
// until its PUBACK; and its own pinger (pinger5), which notices a silent
// broker within 1.25 x keepalive (paho's default waits a whole keepalive
// for the PINGRESP).
type client5 struct {
	pc    *paho.Client
	raw   *bufConn // the network connection, from dial
	state *state5
	p     *connectParams

	// pubMu makes the hand-over of a publish's token to state5 (next)
	// and the publish itself one step.
	pubMu     sync.Mutex
	maxPacket int
}

// receiveMaximum5 is gatewayd's own Receive Maximum: how many QoS 1 and 2
// messages the broker may send it unacknowledged (paho.golang sizes a
// channel by it).
const receiveMaximum5 = 100

// payloadUTF8 is the payload format indicator of text: every payload
// gatewayd publishes is UTF-8 (readings, availability, discovery).
var payloadUTF8 = byte(1)

func connect5(ctx context.Context, p *connectParams) (client, connack, error) {
	raw, err := dial(ctx, p.url, p.tls, writeTimeout(p))
	if err != nil {
		return nil, connack{}, err
	}
	// paho.golang writes from several goroutines; a packet is written in
	// more than one Write, so the connection must be locked per packet.
	nc := packets.NewThreadSafeConn(raw)
	c := &client5{raw: raw, p: p, state: newState5()}
	// paho.golang fails the requests in flight before it reports why the
	// connection ended: the state reports it first, so that the session
	// logs the cause, not the failed requests.
	c.state.onLost = func(dp *packets.Disconnect) {
		if dp != nil {
			p.onLost(disconnectError(paho.DisconnectFromPacketDisconnect(dp)))
		} else if err := raw.readErr(); err != nil {
			p.onLost(err)
		}
	}
	c.pc = paho.NewClient(paho.ClientConfig{
		ClientID:    p.clientID,
		Conn:        nc,
		Session:     c.state,
		PingHandler: newPinger5(p.onLost),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			m := r.Packet
			p.onMessage(Message{Topic: m.Topic, QoS: m.QoS, Retained: m.Retain, Duplicate: m.Duplicate(), Payload: m.Payload})
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { p.onLost(disconnectError(d)) },
		OnClientError:      func(err error) { p.onLost(err) },
		PacketTimeout:      max(p.connectTimeout, p.keepalive),
	})
	cp := &paho.Connect{
		ClientID:   p.clientID,
		KeepAlive:  uint16(min(p.keepalive/time.Second, math.MaxUint16)),
		CleanStart: p.cleanSession,
		Properties: &paho.ConnectProperties{ReceiveMaximum: ptr[uint16](receiveMaximum5), RequestProblemInfo: true},
	}
	if !p.cleanSession {
		cp.Properties.SessionExpiryInterval = ptr(uint32(min(p.sessionExpiry/time.Second, math.MaxUint32)))
	}
	if p.username != "" {
		cp.Username, cp.UsernameFlag = p.username, true
	}
	if p.password != "" {
		cp.Password, cp.PasswordFlag = []byte(p.password), true
	}
	if w := p.will; w != nil {
		cp.WillMessage = &paho.WillMessage{Retain: w.retain, QoS: w.qos, Topic: w.topic, Payload: []byte(w.payload)}
		cp.WillProperties = &paho.WillProperties{PayloadFormat: &payloadUTF8}
	}
	ca, err := c.pc.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			return nil, connack{}, connackError(ca)
		}
		if ctx.Err() != nil {
			return nil, connack{}, fmt.Errorf("no CONNACK within %s", p.connectTimeout)
		}
		return nil, connack{}, err
	}
	ack := connack{sessionPresent: ca.SessionPresent, maxQoS: 2}
	if pr := ca.Properties; pr != nil {
		if pr.ReceiveMaximum != nil {
			ack.receiveMaximum = int(*pr.ReceiveMaximum)
		}
		if pr.MaximumPacketSize != nil {
			ack.maxPacketSize = int(*pr.MaximumPacketSize)
			c.maxPacket = ack.maxPacketSize
		}
		if pr.MaximumQoS != nil {
			ack.maxQoS = *pr.MaximumQoS
		}
		ack.noRetain = !pr.RetainAvailable
		if pr.ServerKeepAlive != nil {
			ack.keepalive = time.Duration(*pr.ServerKeepAlive) * time.Second
		}
		ack.assignedClientID = pr.AssignedClientID
	}
	if ack.receiveMaximum == 0 {
		ack.receiveMaximum = math.MaxUint16 // MQTT 5's default
	}
	c.state.quota = make(chan struct{}, ack.receiveMaximum)
	// Lost connections are reported through OnClientError and
	// OnServerDisconnect; Done is the last resort.
	go func() {
		<-c.pc.Done()
		time.AfterFunc(time.Second, func() { p.onLost(errLost) })
	}()
	return c, ack, nil
}

func ptr[T any](v T) *T { return &v }

// ConnackError is an MQTT 5 CONNACK that refused the connection.
type ConnackError struct {
	Code   byte
	Reason string // the broker's reason string; may be empty
}

func (e *ConnackError) Error() string {
	s := fmt.Sprintf("the broker refused the connection: %s (0x%02x)", ReasonName(e.Code), e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func connackError(ca *paho.Connack) error {
	e := &ConnackError{Code: ca.ReasonCode}
	if ca.Properties != nil {
		e.Reason = ca.Properties.ReasonString
	}
	return e
}

// DisconnectError is why the broker ended an MQTT 5 connection with a
// DISCONNECT packet.
type DisconnectError struct {
	Code   byte
	Reason string // the broker's reason string; may be empty
}

func (e *DisconnectError) Error() string {
	s := fmt.Sprintf("the broker disconnected: %s (0x%02x)", ReasonName(e.Code), e.Code)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

func disconnectError(d *paho.Disconnect) error {
	e := &DisconnectError{Code: d.ReasonCode}
	if d.Properties != nil {
		e.Reason = d.Properties.ReasonString
	}
	return e
}

// publishSize is the size of the PUBLISH packet that publish5 sends, to
// check it against the broker's Maximum Packet Size.
func publishSize(topic string, qos byte, flags Flags, expiry uint32, payload []byte) int {
	props := 2 // payload format indicator
	if flags&JSON != 0 {
		props += 3 + len(contentJSON)
	}
	if expiry > 0 {
		props += 5
	}
	rest := 2 + len(topic) + varintLen(props) + props + len(payload)
	if qos > 0 {
		rest += 2
	}
	return 1 + varintLen(rest) + rest
}

func varintLen(n int) int {
	l := 1
	for n >= 128 {
		n >>= 7
		l++
	}
	return l
}

const contentJSON = "application/json"

func (c *client5) publish(topic string, qos byte, retain bool, flags Flags, payload []byte) Token {
	var expiry uint32
	if flags&Expiring != 0 {
		expiry = c.p.expiry.Load()
	}
	if c.maxPacket > 0 && publishSize(topic, qos, flags, expiry, payload) > c.maxPacket {
		return doneToken(&RefusedError{Code: 0x95, Local: true,
			Reason: fmt.Sprintf("larger than the broker's maximum packet size of %d bytes", c.maxPacket)})
	}
	props := &paho.PublishProperties{PayloadFormat: &payloadUTF8}
	if flags&JSON != 0 {
		props.ContentType = contentJSON
	}
	if expiry > 0 {
		props.MessageExpiry = &expiry
	}
	pub := &paho.Publish{QoS: qos, Retain: retain, Topic: topic, Payload: payload, Properties: props}
	tok := newToken()
	if qos > 0 {
		// The broker's Receive Maximum: wait for a slot, released when
		// the acknowledgement comes or the connection ends.
		select {
		case c.state.quota <- struct{}{}:
		case <-c.state.gone:
			tok.complete(errLost)
			return tok
		}
	}
	c.pubMu.Lock()
	c.state.setNext(tok)
	_, err := c.pc.PublishWithOptions(context.Background(), pub, paho.PublishOptions{Method: paho.PublishMethod_AsyncSend})
	taken := c.state.takeNext() == nil
	c.pubMu.Unlock()
	switch {
	case qos == 0:
		tok.complete(err)
	case !taken:
		// Refused before it reached the session state: nothing will
		// complete the token, nor release its slot.
		<-c.state.quota
		if err == nil {
			err = errLost
		}
		tok.complete(err)
	}
	// Otherwise state5 completes the token: on its acknowledgement, or
	// when the connection is lost (also when this write failed).
	return tok
}

func (c *client5) subscribe(ctx context.Context, filters []Filter) ([]byte, error) {
	s := &paho.Subscribe{Subscriptions: make([]paho.SubscribeOptions, len(filters))}
	for i, f := range filters {
		s.Subscriptions[i] = paho.SubscribeOptions{Topic: f.Topic, QoS: f.QoS}
	}
	sa, err := c.pc.Subscribe(ctx, s)
	if sa != nil && len(sa.Reasons) == len(filters) {
		return sa.Reasons, nil // refusals are codes >= 0x80, not errors
	}
	if err == nil {
		err = errors.New("SUBACK with a wrong number of reason codes")
	}
	if ctx.Err() != nil {
		return nil, errNoAnswer(ctx)
	}
	return nil, err
}

func (c *client5) unsubscribe(ctx context.Context, filters []string) error {
	_, err := c.pc.Unsubscribe(ctx, &paho.Unsubscribe{Topics: filters})
	if err != nil && ctx.Err() != nil {
		return errNoAnswer(ctx)
	}
	return err
}

func (c *client5) disconnect() {
	c.raw.lingerOnClose(closeLinger)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.pc.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}()
	c.raw.waitEnded(closeFlushWait + closeLinger)
	select { // paho.golang's goroutines end with the connection
	case <-done:
	case <-time.After(time.Second):
	}
}

func (c *client5) close() { c.raw.abort() }
