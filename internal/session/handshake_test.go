package session

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// silentBroker accepts TCP connections and reads what comes, but never
// answers: a broker URL that hangs the handshake (a NATS node that cannot
// serve sessions yet, a wrong port behind a load balancer). It records the
// protocol name and level of every CONNECT.
type silentBroker struct {
	ln net.Listener

	mu       sync.Mutex
	connects []string // "MQTT/4"
}

func newSilentBroker(t *testing.T) *silentBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentBroker{ln: ln}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go s.read(c)
		}
	}()
	return s
}

// read parses the CONNECT's fixed header, protocol name and level, then
// swallows the rest.
func (s *silentBroker) read(c net.Conn) {
	hdr := make([]byte, 1)
	if _, err := io.ReadFull(c, hdr); err != nil || hdr[0]>>4 != 1 {
		return
	}
	for { // remaining length
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		if hdr[0]&0x80 == 0 {
			break
		}
	}
	n := make([]byte, 2)
	if _, err := io.ReadFull(c, n); err != nil {
		return
	}
	name := make([]byte, int(n[0])<<8|int(n[1])+1)
	if _, err := io.ReadFull(c, name); err != nil {
		return
	}
	s.mu.Lock()
	s.connects = append(s.connects, string(name[:len(name)-1])+"/"+string('0'+name[len(name)-1]))
	s.mu.Unlock()
	io.Copy(io.Discard, c)
}

func (s *silentBroker) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.connects...)
}

// TestSilentBrokerOneAttempt: a URL that accepts TCP and never answers
// gets exactly one CONNECT of the configured protocol level (no fallback
// to MQTT 3.1 "MQIsdp"), and the next URL is tried within connect_timeout.
func TestSilentBrokerOneAttempt(t *testing.T) {
	eachProtocol(t, func(t *testing.T, proto int) {
		silent := newSilentBroker(t)
		b := testbroker.Start(t, testbroker.Options{})
		o := brokerOptions(b.URL(), "gw")
		o.ConnectTimeout = config.Duration(2 * time.Second)
		o.URLs = []string{"tcp://" + silent.ln.Addr().String(), b.URL()}
		started := time.Now()
		r := start(t, Options{Broker: o, Protocol: proto})
		c := r.conn()
		took := time.Since(started)
		t.Logf("connected to the second URL after %s (connect_timeout 2s)", took.Round(time.Millisecond))
		if c.URL() != b.URL() {
			t.Fatalf("connected to %s", c.URL())
		}
		if took > 2*time.Second+time.Second {
			t.Errorf("took %s: more than one connect_timeout on the silent URL", took)
		}
		want := "MQTT/" + string(rune('0'+proto))
		if got := silent.seen(); len(got) != 1 || got[0] != want {
			t.Errorf("the silent broker saw %q, want exactly [%s]", got, want)
		}
		if r.logs.count("cannot connect to a broker URL; trying the next", "no CONNACK within 2s") != 1 {
			t.Errorf("the silent URL's failure not logged:\n%s", r.logs)
		}
		if value(r.m.MQTTConnectFailures) != 1 {
			t.Errorf("connect failures %v", value(r.m.MQTTConnectFailures))
		}
	})
}
