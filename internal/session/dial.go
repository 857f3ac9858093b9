package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/gatewayd/gatewayd/internal/config"
)

// dial opens the network connection to a broker URL (TCP, TLS or
// WebSocket) before ctx's deadline, for both protocol clients: this is the
// one place where every connection to a broker is made. The connection
// comes wrapped in a bufConn (buffered reads, batched writes; a network
// write that takes longer than writeTimeout fails the connection). The
// MQTT handshake comes after, on the connection returned.
func dial(ctx context.Context, u *url.URL, tc *tls.Config, writeTimeout time.Duration) (*bufConn, error) {
	nc, err := dialRaw(ctx, u, tc)
	if err != nil {
		return nil, err
	}
	return newBufConn(nc, writeTimeout), nil
}

// writeTimeout bounds each network write: a broker that takes no bytes
// for a keepalive is as dead as one that sends none.
func writeTimeout(p *connectParams) time.Duration {
	if p.keepalive > 0 {
		return max(p.keepalive, p.connectTimeout)
	}
	return 30 * time.Second
}

func dialRaw(ctx context.Context, u *url.URL, tc *tls.Config) (net.Conn, error) {
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
		c, err := mqtt.NewWebsocket(ws.String(), tc, timeout, nil, nil)
		if err != nil {
			return nil, err
		}
		return &wsConn{Conn: c}, nil
	}
	return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
}

// wsConn makes a WebSocket connection's write deadline one of its writes.
// A gorilla WebSocket takes one writer at a time, and its
// SetWriteDeadline is a write (a field its writes read, unlike a TCP
// socket's); paho.mqtt.golang's adapter locks Write but not
// SetWriteDeadline, and paho sets the deadline in its sending goroutine
// while its keepalive goroutine writes a PINGREQ: a data race, and a torn
// deadline for the ping's write.
type wsConn struct {
	net.Conn
	mu sync.Mutex // one writer: Write, SetWriteDeadline
}

func (c *wsConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *wsConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
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
