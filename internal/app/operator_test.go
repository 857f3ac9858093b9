package app_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/testbroker"
)

// TestEmbeddedBrokerWithPassword: with embedded_broker.username and
// password_file, the daemon's own session logs in with them (the password
// file named through ${CREDENTIALS_DIRECTORY}, as under systemd's
// LoadCredential=), and a client without them is refused.
func TestEmbeddedBrokerWithPassword(t *testing.T) {
	creds := t.TempDir()
	os.WriteFile(filepath.Join(creds, "mqtt-password"), []byte("gw-s3cret\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	d := startDaemon(t, `gateway: {id: gw}
embedded_broker:
  enabled: true
  listen: "127.0.0.1:0"
  username: gateway
  password_file: ${CREDENTIALS_DIRECTORY}/mqtt-password
sensors: [{name: s0, type: simulated, interval: 20ms}]
`)
	testbroker.Eventually(t, 10*time.Second, "readings published to the embedded broker", func() bool {
		return d.Session.Connected() && value(d.Metrics.MQTTPublished) >= 2
	})
	url := "tcp://" + d.BrokerAddr()
	if connects(t, url, "", "") || connects(t, url, "gateway", "wrong") {
		t.Error("the embedded broker let in a client without the password")
	}
	if !connects(t, url, "gateway", "gw-s3cret") {
		t.Error("the embedded broker refused its user")
	}
	if strings.Contains(d.logs.String(), "gw-s3cret") {
		t.Error("the password is in the log")
	}
}

// connects reports whether a session with these credentials connects, or
// is refused (false), within 10 s.
func connects(t *testing.T, url, user, pass string) bool {
	t.Helper()
	b := config.Default().Broker
	b.URLs, b.ClientID, b.Username, b.Password = []string{url}, "probe-"+user+pass, user, config.Secret(pass)
	b.Availability.Topic = ""
	m := metrics.New("probe")
	sess, err := session.New(session.Options{Broker: b}, slog.New(slog.DiscardHandler), m, metrics.NewLiveness(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); sess.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for ctx.Err() == nil {
		if sess.Connected() {
			return true
		}
		if value(m.MQTTConnectFailures) > 0 {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s: neither connected nor refused within 10 s", url)
	return false
}
