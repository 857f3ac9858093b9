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
	TLS           *tls.Config       // serve MQTT over TLS instead of plain TCP
	WebSocket     bool              // serve MQTT over WebSocket (ws://)
}

// Message is one PUBLISH the broker received.
type Message struct {
	ClientID string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	At       time.Time
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
	opts Options
	mu   sync.Mutex
	msgs []Message
}

func (h *hook) ID() string { return "testbroker" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublished, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if h.opts.Users == nil {
		return true
	}
	pw, ok := h.opts.Users[string(cl.Properties.Username)]
	return ok && pw == string(pk.Connect.Password)
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write {
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
	m := Message{ClientID: cl.ID, Topic: pk.TopicName, Payload: bytes.Clone(pk.Payload), QoS: pk.FixedHeader.Qos, Retain: pk.FixedHeader.Retain, At: time.Now()}
	h.mu.Lock()
	h.msgs = append(h.msgs, m)
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
