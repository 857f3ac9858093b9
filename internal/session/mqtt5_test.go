package session

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// MQTT 5's own semantics: reason codes, CONNACK limits, properties.

// TestRefusal: a PUBACK >= 0x80 completes the token with a *RefusedError
// that names the reason and carries the broker's reason string; a code
// below 0x80 (0x10 "no matching subscribers" included) is a success.
func TestRefusal(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{DenyPublish: []string{"denied"},
		AckCodes: map[string]byte{"nobody": 0x10, "quota": 0x97}})
	r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5})
	c := r.conn()
	err := publish(t, c, "denied", 1, false, 0, "x")
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Code != 0x87 || refused.Name() != "not_authorized" || refused.Local || refused.Reason == "" {
		t.Fatalf("denied publish: %v (%#v)", err, refused)
	}
	if err := publish(t, c, "quota", 1, false, 0, "x"); !errors.As(err, &refused) || refused.Name() != "quota_exceeded" {
		t.Fatalf("0x97: %v", err)
	}
	if err := publish(t, c, "nobody", 1, false, 0, "x"); err != nil {
		t.Fatalf("0x10 is a success: %v", err)
	}
	if err := publish(t, c, "allowed", 1, false, 0, "x"); err != nil {
		t.Fatal(err)
	}
	if c.isLost() {
		t.Fatal("a refusal lost the connection")
	}
}

// TestConnackLimits: the CONNACK's Receive Maximum, Maximum Packet Size,
// Maximum QoS, Retain Available and Server Keep Alive are read and kept.
func TestConnackLimits(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{ReceiveMaximum: 3, MaximumPacketSize: 300, ServerKeepAlive: 7})
	r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5})
	c := r.conn()
	if c.ReceiveMaximum() != 3 || c.ack.maxPacketSize != 300 || c.ack.keepalive != 7*time.Second || c.ack.maxQoS != 2 || c.ack.noRetain {
		t.Fatalf("connack %+v", c.ack)
	}
	// 50 publishes without waiting: the connection keeps at most 3 in
	// flight (mochi disconnects a client that exceeds its Receive Maximum).
	var toks []Token
	for i := range 50 {
		toks = append(toks, c.Publish("rm/x", 1, false, []byte{byte(i)}))
	}
	for i, tok := range toks {
		select {
		case <-tok.Done():
			if tok.Error() != nil {
				t.Fatalf("publish %d: %v", i, tok.Error())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("publish %d not acknowledged", i)
		}
	}
	// A packet larger than the broker takes is refused here, not sent
	// (mochi would disconnect).
	err := publish(t, c, "big", 1, false, JSON|Expiring, strings.Repeat("x", 290))
	var refused *RefusedError
	if !errors.As(err, &refused) || refused.Code != 0x95 || !refused.Local {
		t.Fatalf("too large: %v", err)
	}
	if err := publish(t, c, "small", 1, false, JSON|Expiring, strings.Repeat("x", 250)); err != nil {
		t.Fatal(err)
	}
	if c.isLost() {
		t.Fatal("connection lost")
	}
	if !strings.Contains(r.logs.String(), `"server_keepalive":"7s"`) {
		t.Error("server keepalive not logged")
	}
}

// TestNoRetainQoS0Broker: a broker without retained messages and without
// QoS 1 refuses a retained QoS 1 will; the session connects with a lesser
// will, and sends its publishes within the limits.
func TestNoRetainQoS0Broker(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{NoRetain: true, QoS0Only: true})
	r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5})
	c := r.conn()
	if c.ack.maxQoS != 0 || !c.ack.noRetain {
		t.Fatalf("connack %+v", c.ack)
	}
	if err := publish(t, c, "x", 1, true, 0, "1"); err != nil {
		t.Fatal(err)
	}
	testbroker.Eventually(t, 10*time.Second, "x at the broker", func() bool { return len(b.Messages(func(s string) bool { return s == "x" })) == 1 })
	if m := b.Messages(func(s string) bool { return s == "x" })[0]; m.QoS != 0 || m.Retain {
		t.Errorf("published at QoS %d retain %v", m.QoS, m.Retain)
	}
	last := b.Connects()[len(b.Connects())-1]
	if last.WillRetain || last.WillQoS != 0 {
		t.Errorf("will retain %v qos %d", last.WillRetain, last.WillQoS)
	}
}

// TestPublishProperties: payload format indicator 1 on every publish,
// content type application/json on JSON ones, message expiry on the
// expiring ones.
func TestPublishProperties(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5, MessageExpiry: 90 * time.Second})
	c := r.conn()
	for _, p := range []struct {
		topic string
		flags Flags
	}{{"json", JSON | Expiring}, {"value", Expiring}, {"plain", 0}} {
		if err := publish(t, c, p.topic, 1, false, p.flags, "1"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]testbroker.Message{}
	three := func(s string) bool { return s == "json" || s == "value" || s == "plain" }
	// mochi records a message just after its PUBACK.
	testbroker.Eventually(t, 10*time.Second, "3 at the broker", func() bool { return len(b.Messages(three)) == 3 })
	for _, m := range b.Messages(three) {
		got[m.Topic] = m
	}
	for topic, want := range map[string]testbroker.Message{
		"json":  {PayloadFormat: 1, ContentType: "application/json", Expiry: 90},
		"value": {PayloadFormat: 1, Expiry: 90},
		"plain": {PayloadFormat: 1},
	} {
		m := got[topic]
		if m.PayloadFormat != want.PayloadFormat || m.ContentType != want.ContentType || m.Expiry != want.Expiry {
			t.Errorf("%s: format %d content type %q expiry %d", topic, m.PayloadFormat, m.ContentType, m.Expiry)
		}
	}
	if v, _ := b.Retained("gatewayd/gw/status"); string(v) != "online" {
		t.Errorf("status %q", v)
	}
	// A reload changes the expiry of the next publishes, without a reconnect.
	o := Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5, MessageExpiry: 30 * time.Second, OnMessage: r.collect}
	if err := r.Update(o); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, c, "later", 1, false, Expiring, "1"); err != nil {
		t.Fatal(err)
	}
	later := func(s string) bool { return s == "later" }
	testbroker.Eventually(t, 10*time.Second, "later at the broker", func() bool { return len(b.Messages(later)) == 1 })
	for _, m := range b.Messages(later) {
		if m.Expiry != 30 {
			t.Errorf("expiry after the reload %d", m.Expiry)
		}
	}
}

// TestServerDisconnectLogged: a DISCONNECT from the broker ends the
// connection with its reason, logged; the session reconnects.
func TestServerDisconnectLogged(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	b := testbroker.Start(t, testbroker.Options{OnPublish: func(_, topic string) {
		if topic == "held" {
			close(held)
			<-release
		}
	}})
	defer close(release)
	r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: 5})
	c := r.conn()
	// A publish in flight when the DISCONNECT comes fails, but the
	// connection's error is the DISCONNECT's reason, not the failure.
	tok := c.Publish("held", 1, false, []byte("x"))
	<-held
	if !b.Disconnect("gw", 0x98, "maintenance") {
		t.Fatal("client not found")
	}
	<-tok.Done()
	if tok.Error() == nil || !c.isLost() {
		t.Fatalf("token %v, lost %v", tok.Error(), c.isLost())
	}
	var de *DisconnectError
	if !errors.As(c.Err(), &de) || de.Code != 0x98 || de.Reason != "maintenance" {
		t.Fatalf("lost with %v", c.Err())
	}
	r.conn()
	if r.logs.count(`"msg":"connection lost"`, "administrative_action", "maintenance") != 1 {
		t.Errorf("disconnect not logged with its reason:\n%s", r.logs)
	}
}

// TestAssignedClientID: with no client id the broker assigns one, and the
// session keeps it for the next connections (the persistent session
// lives under it).
func TestAssignedClientID(t *testing.T) {
	b := testbroker.Start(t, testbroker.Options{})
	o := brokerOptions(b.URL(), "")
	o.Availability.Topic = ""
	r := start(t, Options{Broker: o, Protocol: 5})
	c := r.conn()
	c.Abort(errors.New("test"))
	r.conn()
	cs := b.Connects()
	if len(cs) != 2 || cs[0].ClientID == "" || cs[1].ClientID != cs[0].ClientID {
		t.Fatalf("connects %+v", cs)
	}
	if r.logs.count("the broker assigned a client id", cs[0].ClientID) < 1 {
		t.Error("assigned id not logged")
	}
}

// TestHalfOpenNoticed: a link that stops answering (TCP up) is noticed
// by the keepalive within 1.5 x keepalive, on both protocols.
func TestHalfOpenNoticed(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		p := testbroker.NewProxy(t, b.Addr())
		r := start(t, Options{Broker: brokerOptions(p.URL(), "gw"), Protocol: proto})
		c := r.conn()
		p.Blackhole()
		frozen := time.Now()
		select {
		case <-c.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("not noticed")
		}
		noticed := time.Since(frozen)
		t.Logf("noticed after %s (keepalive 2s): %v", noticed.Round(time.Millisecond), c.Err())
		if noticed > 3*time.Second+time.Second {
			t.Errorf("noticed after %s, want within 1.5 x keepalive", noticed)
		}
		p.Restore()
		r.conn()
	})
}

// TestQoS2BothWays: QoS 2 publishes complete, and QoS 2 messages arrive
// once.
func TestQoS2BothWays(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		var mu sync.Mutex
		got := map[string]int{}
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "in/#", QoS: 2}},
			OnMessage:     func(m Message) { mu.Lock(); got[string(m.Payload)]++; mu.Unlock() }})
		c := r.conn()
		// The subscription is requested in the background: a message
		// published before the broker has it is not delivered to anyone.
		subscribed(t, b, "gw", "in/#")
		for i := range 20 {
			if err := publish(t, c, "in/x", 2, false, 0, fmt.Sprint("q", i)); err != nil {
				t.Fatal(err)
			}
		}
		testbroker.Eventually(t, 10*time.Second, "20 received", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 20 })
		mu.Lock()
		defer mu.Unlock()
		for i := range 20 {
			if n := got[fmt.Sprint("q", i)]; n != 1 {
				t.Errorf("q%d received %d times", i, n)
			}
		}
	})
}
