package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatewayd/gatewayd/internal/config"
)

// dial opens the network connection to a broker URL (TCP, TLS or
// WebSocket) before ctx's deadline, for both protocol clients: this is the
// one place where every connection to a broker is made, and so where a
// wrapper of the net.Conn (buffering, counting) belongs. The MQTT handshake
// comes after, on the connection returned.
func dial(ctx context.Context, u *url.URL, tc *tls.Config) (net.Conn, error) {
	var d net.Dialer
	switch u.Scheme {
	case "tcp", "mqtt":
		return d.DialContext(ctx, "tcp", hostPort(u, "1883"))
	case "ssl", "tls", "mqtts":
		td := tls.Dialer{NetDialer: &d, Config: tc}
		return td.DialContext(ctx, "tcp", hostPort(u, "8883"))
	case "ws", "wss":
		timeout := 10 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			timeout = time.Until(dl)
		}
		ws := *u
		ws.User = nil
		// paho.mqtt.golang's WebSocket adapter (gorilla/websocket, the
		// "mqtt" subprotocol) serves MQTT 5 as well as 3.1.1.
		return mqtt.NewWebsocket(ws.String(), tc, timeout, nil, nil)
	}
	return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
}

// hostPort is the URL's host:port, with the scheme's default port.
func hostPort(u *url.URL, port string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// tlsConfig builds the TLS settings for ssl://, tls://, mqtts:// and
// wss:// from the files named in broker.tls. The session calls it at every
// connect, so that a renewed certificate applies at the next reconnect.
func tlsConfig(t config.TLS) (*tls.Config, error) {
	if t == (config.TLS{}) {
		return nil, nil // the system roots then
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("broker.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("broker.tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// password is the broker password: broker.password_file read now (so that
// a rotated password applies at the next connect), else broker.password.
func password(b config.Broker) (string, error) {
	pw, err := b.ReadPassword()
	return pw.Reveal(), err
}
