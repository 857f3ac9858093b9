// Package testbroker runs a real MQTT broker (mochi-mqtt) on 127.0.0.1 for
// tests, records every message it receives, and can be stopped and started
// again on the same port. proxy.go adds a TCP proxy that can cut or
// black-hole the link, for faults a broker restart cannot show.
package testbroker

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/gatewayd/gatewayd/internal/broker"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Options shape the broker.
type Options struct {
	Users         map[string]string // username -> password; nil: anyone may connect
	DenySubscribe []string          // topic filters whose SUBSCRIBE is refused (SUBACK 0x80)
	// DenyPublish are topics whose PUBLISH the ACL denies: an MQTT 5
	// QoS 1 publish then gets PUBACK 0x87 (not authorized), and an MQTT
	// 3.1.1 client is disconnected (mochi's way; mosquitto acknowledges
	// and drops it instead).
	DenyPublish []string
	// AckCodes answer an MQTT 5 QoS 1 PUBLISH on a topic with this
	// PUBACK reason code (the message is not delivered).
	AckCodes  map[string]byte
	TLS       *tls.Config // serve MQTT over TLS instead of plain TCP
	WebSocket bool        // serve MQTT over WebSocket (ws://)

	// MQTT 5 CONNACK limits the broker announces and enforces (0: none).
	ReceiveMaximum    uint16
	MaximumPacketSize uint32
	QoS0Only          bool   // Maximum QoS 0
	NoRetain          bool   // Retain Available 0
	ServerKeepAlive   uint16 // seconds

	// OnSubscribe, when set, is called with each SUBSCRIBE's filters
	// before the broker handles it; it may block (holding the client's
	// packets back).
	OnSubscribe func(clientID string, filters []string)
	// OnPublish, when set, is called with each PUBLISH of a client before
	// the broker handles it; it may block (holding the acknowledgement).
	OnPublish func(clientID, topic string)
	// AfterAck, when set, is called with each QoS 1 PUBLISH of a client
	// after the broker sent its PUBACK and before it delivers the message
	// to the subscribers and records it (mochi acknowledges first, from
	// the connection's own goroutine). It may block, holding back the
	// delivery but not the acknowledgement, nor the other connections: a
	// broker that lags behind the PUBACKs it sent.
	AfterAck func(clientID, topic string, payload []byte)
}

// Connect is one CONNECT the broker accepted.
type Connect struct {
	ClientID      string
	Protocol      byte
	Clean         bool
	Keepalive     uint16
	SessionExpiry uint32
	Username      string
	WillTopic     string
	WillRetain    bool
	WillQoS       byte
	At            time.Time
}

// Message is one PUBLISH the broker received.
type Message struct {
	ClientID string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	At       time.Time
	// MQTT 5 properties.
	PayloadFormat byte // 0 unless sent
	ContentType   string
	Expiry        uint32
}

// Broker is a test broker.
type Broker struct {
	t    testing.TB
	opts Options
	addr string
	hook *hook

	mu  sync.Mutex
	srv *mqtt.Server
}

// Start starts a broker on a free port of 127.0.0.1; it stops with the test.
func Start(t testing.TB, opts Options) *Broker {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", opts)
}

// StartAt starts a broker on addr; it stops with the test.
func StartAt(t testing.TB, addr string, opts Options) *Broker {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &Broker{t: t, opts: opts, addr: ln.Addr().String(), hook: &hook{opts: opts}}
	if opts.WebSocket {
		ln.Close() // mochi's websocket listener opens its own socket
		ln = nil
	}
	b.serve(ln)
	t.Cleanup(b.Stop)
	return b
}

// Addr is host:port.
func (b *Broker) Addr() string { return b.addr }

// URL is the broker's URL for gatewayd (tcp://, ssl:// or ws://).
func (b *Broker) URL() string {
	switch {
	case b.opts.WebSocket:
		return "ws://" + b.addr + "/mqtt"
	case b.opts.TLS != nil:
		return "ssl://" + b.addr
	}
	return "tcp://" + b.addr
}

func (b *Broker) serve(ln net.Listener) {
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: discardLogger()})
	srv.Options.Capabilities.MaximumClientWritesPending = 65536
	if o := b.opts; o.ReceiveMaximum > 0 {
		srv.Options.Capabilities.ReceiveMaximum = o.ReceiveMaximum
	}
	if b.opts.MaximumPacketSize > 0 {
		srv.Options.Capabilities.MaximumPacketSize = b.opts.MaximumPacketSize
	}
	if b.opts.QoS0Only {
		srv.Options.Capabilities.MaximumQos = 0
	}
	if b.opts.NoRetain {
		srv.Options.Capabilities.RetainAvailable = 0
	}
	if err := srv.AddHook(b.hook, nil); err != nil {
		b.t.Fatal(err)
	}
	var l listeners.Listener
	switch {
	case b.opts.WebSocket:
		l = listeners.NewWebsocket(listeners.Config{ID: "ws", Address: b.addr})
	case b.opts.TLS != nil:
		l = broker.NewListener("tls", tls.NewListener(ln, b.opts.TLS), &srv.Listeners.ClientsWg)
	default:
		l = broker.NewListener("tcp", ln, &srv.Listeners.ClientsWg)
	}
	if err := srv.AddListener(l); err != nil {
		b.t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		b.t.Fatal(err)
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
}

// Stop closes the broker and every connection to it. The broker forgets its
// sessions, as a restart of a broker without persistence does.
func (b *Broker) Stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// Restart starts the broker again on the same port.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	if b.opts.WebSocket {
		b.serve(nil)
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			b.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("cannot listen on %s again: %v", b.addr, err)
		}
		time.Sleep(20 * time.Millisecond) // the port is still being released
	}
}

// Publish sends a message from the broker itself (as a client would).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		b.t.Fatal("broker stopped")
	}
	if err := srv.Publish(topic, payload, retain, qos); err != nil {
		b.t.Fatal(err)
	}
}

// Messages returns the messages received so far on topics accepted by keep
// (nil: all), in arrival order.
func (b *Broker) Messages(keep func(topic string) bool) []Message {
	return b.hook.messages(keep)
}

// Retained returns the retained payload of a topic and whether there is one.
func (b *Broker) Retained(topic string) ([]byte, bool) {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return nil, false
	}
	pk, ok := srv.Topics.Retained.Get(topic)
	if !ok || len(pk.Payload) == 0 {
		return nil, false
	}
	return bytes.Clone(pk.Payload), true
}

// ErrRefused is returned by the ACL for denied subscriptions.
var ErrRefused = errors.New("refused by the test broker")

type hook struct {
	mqtt.HookBase
	opts     Options
	mu       sync.Mutex
	msgs     []Message
	connects []Connect
	// acking is the QoS 1 PUBLISH each connection is handling, between
	// OnPublish and OnPublished (for AfterAck).
	acking map[*mqtt.Client]packets.Packet
}

// Connects returns the CONNECTs accepted so far (since Start, across
// restarts), in order.
func (b *Broker) Connects() []Connect {
	b.hook.mu.Lock()
	defer b.hook.mu.Unlock()
	return append([]Connect(nil), b.hook.connects...)
}

// SetUsers replaces the accepted usernames and passwords.
func (b *Broker) SetUsers(users map[string]string) {
	b.hook.mu.Lock()
	b.hook.opts.Users = users
	b.hook.mu.Unlock()
}

// Subscriptions returns the filters the broker holds for a client id
// (connected or not), sorted.
func (b *Broker) Subscriptions(clientID string) []string {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return nil
	}
	cl, ok := srv.Clients.Get(clientID)
	if !ok {
		return nil
	}
	var out []string
	for f := range cl.State.Subscriptions.GetAll() {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Disconnect makes the broker end a client's connection with an MQTT 5
// DISCONNECT of this reason code.
func (b *Broker) Disconnect(clientID string, code byte, reason string) bool {
	b.mu.Lock()
	srv := b.srv
	b.mu.Unlock()
	if srv == nil {
		return false
	}
	cl, ok := srv.Clients.Get(clientID)
	if !ok {
		return false
	}
	srv.DisconnectClient(cl, packets.Code{Code: code, Reason: reason})
	return true
}

func (h *hook) ID() string { return "testbroker" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublished, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck,
		mqtt.OnConnect, mqtt.OnPacketEncode, mqtt.OnSubscribe, mqtt.OnPublish, mqtt.OnQosComplete}, []byte{b})
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	h.mu.Lock()
	users := h.opts.Users
	h.mu.Unlock()
	if users == nil {
		return true
	}
	pw, ok := users[string(cl.Properties.Username)]
	return ok && pw == string(pk.Connect.Password)
}

func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c := Connect{ClientID: cl.ID, Protocol: pk.ProtocolVersion, Clean: pk.Connect.Clean, Keepalive: pk.Connect.Keepalive,
		SessionExpiry: pk.Properties.SessionExpiryInterval, Username: string(pk.Connect.Username), At: time.Now()}
	if pk.Connect.WillFlag {
		c.WillTopic, c.WillRetain, c.WillQoS = pk.Connect.WillTopic, pk.Connect.WillRetain, pk.Connect.WillQos
	}
	if h.opts.ServerKeepAlive > 0 {
		cl.State.ServerKeepalive = true
		cl.State.Keepalive = h.opts.ServerKeepAlive
	}
	h.mu.Lock()
	h.connects = append(h.connects, c)
	h.mu.Unlock()
	return nil
}

// OnPacketEncode announces the limits mochi enforces but does not put in
// its CONNACK.
func (h *hook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || cl.Properties.ProtocolVersion < 5 || pk.ReasonCode >= 0x80 {
		return pk
	}
	if h.opts.MaximumPacketSize > 0 {
		pk.Properties.MaximumPacketSize = h.opts.MaximumPacketSize
	}
	if h.opts.NoRetain {
		pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true
	}
	return pk
}

func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if h.opts.OnSubscribe != nil {
		var filters []string
		for _, f := range pk.Filters {
			filters = append(filters, f.Filter)
		}
		h.opts.OnSubscribe(cl.ID, filters)
	}
	return pk
}

func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.opts.OnPublish != nil && !cl.Net.Inline {
		h.opts.OnPublish(cl.ID, pk.TopicName)
	}
	if code, ok := h.opts.AckCodes[pk.TopicName]; ok && !cl.Net.Inline {
		return pk, packets.Code{Code: code, Reason: "test broker"}
	}
	if h.opts.AfterAck != nil && !cl.Net.Inline && pk.FixedHeader.Qos == 1 {
		h.mu.Lock()
		if h.acking == nil {
			h.acking = map[*mqtt.Client]packets.Packet{}
		}
		h.acking[cl] = pk
		h.mu.Unlock()
	}
	return pk, nil
}

// OnQosComplete is called, among others, right after the PUBACK of a
// client's QoS 1 PUBLISH was written, before its delivery.
func (h *hook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	pub, ok := h.acking[cl]
	if ok && pub.PacketID == pk.PacketID && pk.FixedHeader.Type == packets.Puback {
		delete(h.acking, cl)
	} else {
		ok = false
	}
	h.mu.Unlock()
	if ok {
		h.opts.AfterAck(cl.ID, pub.TopicName, pub.Payload)
	}
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
		for _, t := range h.opts.DenyPublish {
			if t == topic {
				return false
			}
		}
		return true
	}
	for _, f := range h.opts.DenySubscribe {
		if f == topic {
			return false
		}
	}
	return true
}

func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	m := Message{ClientID: cl.ID, Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, At: time.Now(),
		ContentType: pk.Properties.ContentType, Expiry: pk.Properties.MessageExpiryInterval}
	if pk.Properties.PayloadFormatFlag {
		m.PayloadFormat = pk.Properties.PayloadFormat
	}
	h.mu.Lock()
	h.msgs = append(h.msgs, m)
	delete(h.acking, cl)
	h.mu.Unlock()
}

func (h *hook) messages(keep func(string) bool) []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Message
	for _, m := range h.msgs {
		if keep == nil || keep(m.Topic) {
			out = append(out, m)
		}
	}
	return out
}
