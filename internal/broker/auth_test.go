package broker

import (
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// connack sends an MQTT 3.1.1 CONNECT (with credentials when user is not
// empty) and returns the CONNACK's return code (0: accepted).
func connack(t *testing.T, addr, user, pass string) byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	str := func(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }
	flags := byte(0x02) // clean session
	body := append(str("MQTT"), 4, 0, 0, 30)
	payload := str("auth-test")
	if user != "" {
		flags |= 0xC0
		payload = append(append(payload, str(user)...), str(pass)...)
	}
	body[7] = flags
	body = append(body, payload...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("no CONNACK: %v", err)
	}
	if ack[0] != 0x20 {
		t.Fatalf("not a CONNACK: % x", ack)
	}
	return ack[3]
}

func TestPasswordRequired(t *testing.T) {
	b, err := StartWith(Options{Listen: "127.0.0.1:0", Username: "gw", Password: "s3cret"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{
		{"gw", "s3cret", true},
		{"", "", false},
		{"gw", "wrong", false},
		{"gw", "s3cret-and-more", false},
		{"other", "s3cret", false},
	} {
		if rc := connack(t, b.Addr(), c.user, c.pass); (rc == 0) != c.ok {
			t.Errorf("user %q password %q: CONNACK return code %d", c.user, c.pass, rc)
		}
	}
}

func TestOpenOnLoopbackOnly(t *testing.T) {
	b, err := Start("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if rc := connack(t, b.Addr(), "", ""); rc != 0 {
		t.Errorf("open loopback broker refused a client: %d", rc)
	}
	// Refused before listening: the tests listen on loopback only.
	for _, addr := range []string{":0", "0.0.0.0:0", "[::]:0"} {
		_, err := Start(addr, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "embedded_broker.username") {
			t.Errorf("Start(%q): %v", addr, err)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:1883": true, "127.1.2.3:1883": true, "[::1]:1883": true, "localhost:1883": true,
		"box.lan:1883": true, // a name: judged by the address it is bound to
		":1883":        false, "0.0.0.0:1883": false, "[::]:1883": false, "192.168.1.5:1883": false, "127.0.0.1": false,
	} {
		if got := loopbackHost(addr); got != want {
			t.Errorf("loopbackHost(%q) = %v", addr, got)
		}
	}
	b, err := Start("localhost:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("localhost: %v", err)
	}
	b.Close()
}
