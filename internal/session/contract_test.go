package session

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// The contract of the session, on every protocol, against a real broker
// (mochi, which speaks 3.1.1 and 5) over TCP on 127.0.0.1.

func TestPublishSubscribeAvailability(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "gatewayd/gw/cmd/#", QoS: 1}}})
		c := r.conn()
		if c.Protocol() != proto {
			t.Fatalf("protocol %d", c.Protocol())
		}
		testbroker.Eventually(t, 10*time.Second, "birth retained", func() bool {
			v, _ := b.Retained("gatewayd/gw/status")
			return string(v) == "online"
		})
		testbroker.Eventually(t, 10*time.Second, "subscribed", func() bool {
			return slices.Contains(b.Subscriptions("gw"), "gatewayd/gw/cmd/#")
		})
		b.Publish("gatewayd/gw/cmd/x", []byte("hello"), false, 1)
		testbroker.Eventually(t, 10*time.Second, "message received", func() bool { return len(r.messages()) == 1 })
		if m := r.messages()[0]; m.Topic != "gatewayd/gw/cmd/x" || string(m.Payload) != "hello" {
			t.Errorf("got %+v", m)
		}
		for _, qos := range []byte{0, 1, 2} {
			if err := publish(t, c, "out/x", qos, false, 0, "p"); err != nil {
				t.Errorf("publish qos %d: %v", qos, err)
			}
		}
		testbroker.Eventually(t, 10*time.Second, "3 publishes at the broker", func() bool {
			return len(b.Messages(func(s string) bool { return s == "out/x" })) == 3
		})
		cs := b.Connects()
		if len(cs) != 1 || cs[0].Protocol != byte(proto) || cs[0].ClientID != "gw" || cs[0].Clean || cs[0].Keepalive != 2 ||
			cs[0].WillTopic != "gatewayd/gw/status" || !cs[0].WillRetain || cs[0].WillQoS != 1 {
			t.Errorf("connects: %+v", cs)
		}
		if proto == 5 && cs[0].SessionExpiry != uint32(DefaultSessionExpiry/time.Second) {
			t.Errorf("session expiry %d", cs[0].SessionExpiry)
		}
		r.stop()
		if v, _ := b.Retained("gatewayd/gw/status"); string(v) != "offline" {
			t.Errorf("status after shutdown %q", v)
		}
	})
}

// TestReconnect: a broker restart loses the connection (Lost closes, the
// tokens in flight end) and the session comes back.
func TestReconnect(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto})
		c := r.conn()
		b.Stop()
		select {
		case <-c.Lost():
		case <-time.After(10 * time.Second):
			t.Fatal("connection not lost")
		}
		if r.Connected() {
			t.Error("connected after the broker stopped")
		}
		b.Restart()
		c2 := r.conn()
		if c2 == c {
			t.Fatal("same connection")
		}
		if err := publish(t, c2, "out/x", 1, false, 0, "p"); err != nil {
			t.Fatal(err)
		}
		if value(r.m.MQTTConnects) != 2 || value(r.m.MQTTConnectionLost) != 1 {
			t.Errorf("connects %v lost %v", value(r.m.MQTTConnects), value(r.m.MQTTConnectionLost))
		}
	})
}

// TestFailoverStartsFromLastGood: after a connection ends, the URL that
// worked last is tried first, not urls[0].
func TestFailoverStartsFromLastGood(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		pa, pb := testbroker.NewProxy(t, b.Addr()), testbroker.NewProxy(t, b.Addr())
		pa.Cut()
		o := brokerOptions(pa.URL(), "gw")
		o.URLs = []string{pa.URL(), pb.URL()}
		r := start(t, Options{Broker: o, Protocol: proto})
		if c := r.conn(); c.URL() != pb.URL() {
			t.Fatalf("connected to %s", c.URL())
		}
		pa.Restore()
		for range 3 {
			c := r.conn()
			c.Abort(errors.New("test"))
			<-c.Lost()
			if c := r.conn(); c.URL() != pb.URL() {
				t.Fatalf("reconnected to %s, not to the last good %s", c.URL(), pb.URL())
			}
		}
	})
}

func TestURLOrderRandom(t *testing.T) {
	urls := []string{"tcp://a:1883", "tcp://b:1883", "tcp://c:1883", "tcp://d:1883"}
	firsts := map[string]int{}
	for i := range 40 {
		o := Options{Broker: config.Broker{URLs: urls}, URLOrder: "random", GatewayID: "gw-" + string(rune('a'+i%26)) + string(rune('0'+i/26))}
		got := urlOrder(&o)
		if again := urlOrder(&o); !slices.Equal(got, again) {
			t.Fatalf("order of %s not stable: %v then %v", o.GatewayID, got, again)
		}
		sorted := slices.Clone(got)
		slices.Sort(sorted)
		if !slices.Equal(sorted, urls) {
			t.Fatalf("not a permutation: %v", got)
		}
		firsts[got[0]]++
	}
	if len(firsts) < 4 {
		t.Errorf("40 gateways start on only %d of 4 nodes: %v", len(firsts), firsts)
	}
	o := Options{Broker: config.Broker{URLs: urls}, URLOrder: "ordered", GatewayID: "x"}
	if got := urlOrder(&o); !slices.Equal(got, urls) {
		t.Errorf("ordered: %v", got)
	}
}

// TestRefusedSubscription: a SUBACK failure is counted and logged, the
// other filters of the request hold.
func TestRefusedSubscription(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{DenySubscribe: []string{"secret/#"}})
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "secret/#", QoS: 1}, {Topic: "open/#", QoS: 1}}})
		testbroker.Eventually(t, 10*time.Second, "refusal counted", func() bool {
			return value(r.m.MQTTSubscribeFailures.WithLabelValues("secret/#")) == 1
		})
		if r.logs.count(`"msg":"the broker refused a subscription"`, `"subscription":"secret/#"`) != 1 {
			t.Errorf("refusal not logged once:\n%s", r.logs)
		}
		if !slices.Contains(b.Subscriptions("gw"), "open/#") {
			t.Error("open/# not subscribed")
		}
	})
}

// TestHandlers: a subscription with its own handler gets its messages,
// the user's OnMessage the others.
func TestHandlers(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		var got []string
		mu := make(chan struct{}, 1)
		mu <- struct{}{}
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "cmd/#", QoS: 1}},
			Handlers: []Handler{{Filter: "homeassistant/status", QoS: 1, Handle: func(m Message) {
				<-mu
				got = append(got, string(m.Payload))
				mu <- struct{}{}
			}}}})
		r.conn()
		testbroker.Eventually(t, 10*time.Second, "both subscribed", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"cmd/#", "homeassistant/status"})
		})
		b.Publish("homeassistant/status", []byte("online"), false, 1)
		b.Publish("cmd/x", []byte("c"), false, 1)
		testbroker.Eventually(t, 10*time.Second, "both delivered", func() bool {
			<-mu
			defer func() { mu <- struct{}{} }()
			return len(got) == 1 && len(r.messages()) == 1
		})
		if got[0] != "online" || r.messages()[0].Topic != "cmd/x" {
			t.Errorf("handler got %q, OnMessage %+v", got, r.messages())
		}
	})
}

// TestOnConnectBeforeCurrent: what the hook publishes reaches the broker
// before anything a user of Current publishes on that connection.
func TestOnConnectBeforeCurrent(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		hooked := make(chan *Conn, 4)
		current := make(chan func() (*Conn, <-chan struct{}), 1)
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto, OnConnect: func(c *Conn) {
			cf := <-current
			current <- cf
			if cur, _ := cf(); cur == c {
				t.Error("Current returned the connection before OnConnect")
			}
			if err := publish(t, c, "discovery/config", 1, true, JSON, `{"a":1}`); err != nil {
				t.Error(err)
			}
			hooked <- c
		}})
		current <- r.Current
		c := r.conn()
		if err := publish(t, c, "reading", 1, false, 0, "1"); err != nil {
			t.Fatal(err)
		}
		if h := <-hooked; h != c {
			t.Fatal("hook saw another connection")
		}
		var order []string
		both := func(s string) bool { return s == "discovery/config" || s == "reading" }
		// mochi records a message just after its PUBACK.
		testbroker.Eventually(t, 10*time.Second, "both at the broker", func() bool { return len(b.Messages(both)) == 2 })
		for _, m := range b.Messages(both) {
			order = append(order, m.Topic)
		}
		if !slices.Equal(order, []string{"discovery/config", "reading"}) {
			t.Errorf("order at the broker: %v", order)
		}
	})
}

// TestPasswordFileReadAtConnect: a rotated password applies at the next
// connect, without a restart.
func TestPasswordFileReadAtConnect(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{Users: map[string]string{"gw": "first"}})
		pw := t.TempDir() + "/pw"
		writeFile(t, pw, "first\n")
		o := brokerOptions(b.URL(), "gw")
		o.Username, o.PasswordFile = "gw", pw
		r := start(t, Options{Broker: o, Protocol: proto})
		c := r.conn()
		b.SetUsers(map[string]string{"gw": "second"})
		writeFile(t, pw, "second\n")
		c.Abort(errors.New("test"))
		<-c.Lost()
		r.conn()
		if n := len(b.Connects()); n != 2 {
			t.Errorf("%d connects", n)
		}
		if strings.Contains(r.logs.String(), "second") || strings.Contains(r.logs.String(), "first") {
			t.Error("a password reached the log")
		}
	})
}

// TestUpdateSubscriptions: a reload subscribes what was added and
// unsubscribes what was removed on the live connection, without a
// reconnect; the next connection uses the new set.
func TestUpdateSubscriptions(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		o := Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "a/#", QoS: 1}, {Topic: "b/#", QoS: 1}}}
		r := start(t, o)
		r.conn()
		testbroker.Eventually(t, 10*time.Second, "a and b", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#", "b/#"})
		})
		o.Subscriptions = []config.Subscription{{Topic: "a/#", QoS: 1}, {Topic: "c/#", QoS: 0}}
		o.OnMessage = r.collect // Update takes the whole options
		if err := r.Update(o); err != nil {
			t.Fatal(err)
		}
		testbroker.Eventually(t, 10*time.Second, "a and c", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#", "c/#"})
		})
		if n := len(b.Connects()); n != 1 {
			t.Errorf("%d connects for a change of subscriptions", n)
		}
		b.Publish("c/x", []byte("1"), false, 0)
		b.Publish("b/x", []byte("2"), false, 0)
		testbroker.Eventually(t, 10*time.Second, "c/x received", func() bool { return len(r.messages()) >= 1 })
		if m := r.messages(); len(m) != 1 || m[0].Topic != "c/x" {
			t.Errorf("received %+v", m)
		}
	})
}

// TestUpdateReconnectsOnce: a change of a broker setting reconnects
// exactly once, with the new settings.
func TestUpdateReconnectsOnce(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		o := Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto}
		r := start(t, o)
		c := r.conn()
		o.Broker.Keepalive = config.Duration(3 * time.Second)
		o.Broker.Availability.Topic = "gatewayd/gw/state"
		if err := r.Update(o); err != nil {
			t.Fatal(err)
		}
		<-c.Lost()
		c2 := r.conn()
		testbroker.Eventually(t, 10*time.Second, "new status online", func() bool {
			v, _ := b.Retained("gatewayd/gw/state")
			return string(v) == "online"
		})
		if v, _ := b.Retained("gatewayd/gw/status"); string(v) != "offline" {
			t.Errorf("old status topic holds %q", v)
		}
		cs := b.Connects()
		if len(cs) != 2 || cs[1].Keepalive != 3 {
			t.Fatalf("connects: %+v", cs)
		}
		if err := publish(t, c2, "x", 1, false, 0, "1"); err != nil {
			t.Fatal(err)
		}
		// The same options again change nothing.
		if err := r.Update(o); err != nil {
			t.Fatal(err)
		}
		if err := publish(t, c2, "x", 1, false, 0, "2"); err != nil {
			t.Fatal(err)
		}
		if n := len(b.Connects()); n != 2 || value(r.m.MQTTConnectionLost) != 0 {
			t.Errorf("%d connects, %v lost", n, value(r.m.MQTTConnectionLost))
		}
		// The other protocol, live.
		o.Protocol = 9 - proto
		if err := r.Update(o); err != nil {
			t.Fatal(err)
		}
		<-c2.Lost()
		if c3 := r.conn(); c3.Protocol() != 9-proto {
			t.Errorf("protocol %d after the update", c3.Protocol())
		}
		if cs := b.Connects(); len(cs) != 3 || cs[2].Protocol != byte(9-proto) {
			t.Errorf("connects: %+v", cs)
		}
	})
}

// TestUpdateDuringOutage: with the broker away, an Update is tried at once
// (not after the backoff), and connects once.
func TestUpdateDuringOutage(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		old := testbroker.Start(t, testbroker.Options{})
		o := Options{Broker: brokerOptions(old.URL(), "gw"), Protocol: proto}
		o.Broker.ReconnectMaxInterval = config.Duration(time.Minute)
		r := start(t, o)
		r.conn()
		old.Stop()
		// After a lost connection (one URL) the retries follow the restart
		// ladder (1 s, doubling): after 4 failures the next waits 8 s.
		testbroker.Eventually(t, 20*time.Second, "backing off for long", func() bool {
			return value(r.m.MQTTConnectFailures) >= 4
		})
		nb := testbroker.Start(t, testbroker.Options{})
		o.Broker.URLs = []string{nb.URL()}
		updated := time.Now()
		if err := r.Update(o); err != nil {
			t.Fatal(err)
		}
		c := r.conn()
		if c.URL() != nb.URL() || time.Since(updated) > 5*time.Second {
			t.Errorf("connected to %s %s after the update", c.URL(), time.Since(updated))
		}
		if n := len(nb.Connects()); n != 1 {
			t.Errorf("%d connects", n)
		}
	})
}

// TestForgottenFiltersUnsubscribed: with a state directory, filters that
// left the config between two runs are unsubscribed from the persistent
// session at the next connect.
func TestForgottenFiltersUnsubscribed(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		dir := t.TempDir()
		o := Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto, StateDir: dir,
			Subscriptions: []config.Subscription{{Topic: "a/#", QoS: 1}, {Topic: "b/#", QoS: 1}}}
		r := start(t, o)
		r.conn()
		testbroker.Eventually(t, 10*time.Second, "a and b", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#", "b/#"})
		})
		r.stop()
		o.Subscriptions = o.Subscriptions[:1]
		r2 := start(t, o)
		if !r2.conn().SessionPresent() {
			t.Fatal("no session present")
		}
		testbroker.Eventually(t, 10*time.Second, "b unsubscribed", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#"})
		})
	})
}

// TestForgottenFilterWithoutSuback: a filter the broker took while its
// SUBACK never reached gatewayd (the link froze, gatewayd stopped) is
// remembered all the same, and unsubscribed at the next start once the
// config no longer has it.
func TestForgottenFilterWithoutSuback(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		entered, release := make(chan struct{}), make(chan struct{})
		var once sync.Once
		b := testbroker.Start(t, testbroker.Options{OnSubscribe: func(id string, _ []string) {
			if id == "gw" {
				once.Do(func() { close(entered); <-release })
			}
		}})
		p := testbroker.NewProxy(t, b.Addr())
		dir := t.TempDir()
		o := Options{Broker: brokerOptions(p.URL(), "gw"), Protocol: proto, StateDir: dir,
			Subscriptions: []config.Subscription{{Topic: "a/#", QoS: 1}, {Topic: "b/#", QoS: 1}}}
		o.Broker.Availability.Topic = ""
		r := start(t, o)
		r.conn()
		<-entered
		p.Blackhole() // the SUBACK stays in the proxy
		close(release)
		testbroker.Eventually(t, 10*time.Second, "a and b at the broker", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#", "b/#"})
		})
		r.stop()
		if r.logs.count(`"msg":"subscribed"`) != 0 {
			t.Fatal("the SUBACK came through")
		}
		o.Broker.URLs = []string{b.URL()} // takes the session over from the frozen link
		o.Subscriptions = o.Subscriptions[:1]
		r2 := start(t, o)
		if !r2.conn().SessionPresent() {
			t.Fatal("no session present")
		}
		testbroker.Eventually(t, 10*time.Second, "b unsubscribed", func() bool {
			return slices.Equal(b.Subscriptions("gw"), []string{"a/#"})
		})
	})
}

// TestSubscribeRetriedOnTheSameConnection: a SUBSCRIBE that is not
// answered in time is sent again, with backoff, without a reconnect.
func TestSubscribeRetriedOnTheSameConnection(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		release := make(chan struct{})
		var once sync.Once
		b := testbroker.Start(t, testbroker.Options{OnSubscribe: func(id string, filters []string) {
			if id == "gw" {
				once.Do(func() { <-release })
			}
		}})
		o := brokerOptions(b.URL(), "gw")
		o.Keepalive = config.Duration(4 * time.Second)
		r := start(t, Options{Broker: o, Protocol: proto, Subscriptions: []config.Subscription{{Topic: "a/#", QoS: 1}}})
		r.conn()
		testbroker.Eventually(t, 15*time.Second, "retry counted", func() bool { return value(r.m.MQTTSubscribeRetries) >= 1 })
		close(release)
		testbroker.Eventually(t, 10*time.Second, "subscribed", func() bool {
			return r.logs.count(`"msg":"subscribed"`) >= 1
		})
		if value(r.m.MQTTConnects) != 1 || value(r.m.MQTTConnectionLost) != 0 {
			t.Errorf("connects %v lost %v", value(r.m.MQTTConnects), value(r.m.MQTTConnectionLost))
		}
	})
}

// TestTLSAndRenewedCertificate: TLS with a client certificate, and a
// renewed certificate used at the next connect, without a restart.
func TestTLSAndRenewedCertificate(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		pki := testbroker.NewPKI(t)
		b := testbroker.Start(t, testbroker.Options{TLS: pki.ServerConfig()})
		o := brokerOptions(b.URL(), "gw")
		o.TLS = config.TLS{CAFile: pki.CAFile, CertFile: pki.CertFile, KeyFile: pki.KeyFile}
		r := start(t, Options{Broker: o, Protocol: proto})
		c := r.conn()
		if err := publish(t, c, "x", 1, false, 0, "1"); err != nil {
			t.Fatal(err)
		}
		pki.IssueClient("gatewayd-renewed")
		c.Abort(errors.New("test"))
		<-c.Lost()
		r.conn()
		if got := pki.ClientNames(); len(got) != 2 || got[0] != "gatewayd" || got[1] != "gatewayd-renewed" {
			t.Errorf("client certificates seen: %v", got)
		}
	})
}

func TestWebSocket(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{WebSocket: true})
		r := start(t, Options{Broker: brokerOptions(b.URL(), "gw"), Protocol: proto,
			Subscriptions: []config.Subscription{{Topic: "in/#", QoS: 1}}})
		c := r.conn()
		subscribed(t, b, "gw", "in/#")
		for range 50 {
			if err := publish(t, c, "in/x", 1, false, 0, "ws"); err != nil {
				t.Fatal(err)
			}
		}
		testbroker.Eventually(t, 10*time.Second, "50 back over ws://", func() bool { return len(r.messages()) == 50 })
	})
}

// TestWebSocketPingWhilePublishing: over WebSocket, keepalive pings go
// out while publishes do (QoS 0: no acknowledgement comes back, so the
// client pings every keepalive although it sends), and neither breaks
// the connection nor races with the other (run with -race). A gorilla
// WebSocket takes one writer at a time, its write deadline included;
// paho.mqtt.golang pings from its own goroutine.
func TestWebSocketPingWhilePublishing(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{WebSocket: true})
		o := brokerOptions(b.URL(), "gw")
		o.Keepalive = config.Duration(time.Second)
		o.Availability.Topic = ""
		r := start(t, Options{Broker: o, Protocol: proto})
		c := r.conn()
		n := 0
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); n++ {
			tok := c.Publish("ws/x", 0, false, []byte("p"))
			select {
			case <-tok.Done():
			case <-c.Lost():
				t.Fatalf("connection lost after %d publishes: %v", n, c.Err())
			}
			time.Sleep(2 * time.Millisecond)
		}
		testbroker.Eventually(t, 10*time.Second, fmt.Sprint(n, " at the broker"), func() bool {
			return len(b.Messages(func(s string) bool { return s == "ws/x" })) == n
		})
		if lost := value(r.m.MQTTConnectionLost); lost != 0 {
			t.Errorf("%v connections lost", lost)
		}
	})
}

// TestLastWill: a connection that dies leaves the retained will
// "offline"; the next connection says "online" again.
func TestLastWill(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		b := testbroker.Start(t, testbroker.Options{})
		p := testbroker.NewProxy(t, b.Addr())
		r := start(t, Options{Broker: brokerOptions(p.URL(), "gw"), Protocol: proto})
		r.conn()
		status := func(want string) func() bool {
			return func() bool { v, _ := b.Retained("gatewayd/gw/status"); return string(v) == want }
		}
		testbroker.Eventually(t, 10*time.Second, "online", status("online"))
		p.Cut()
		testbroker.Eventually(t, 10*time.Second, "will published", status("offline"))
		p.Restore()
		testbroker.Eventually(t, 10*time.Second, "online again", status("online"))
	})
}
