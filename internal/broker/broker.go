// Package broker runs the embedded MQTT broker (mochi-mqtt), for a box that
// has none: the quick start and the tests need nothing installed.
package broker

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	addr string
}

// Options configure the embedded broker.
type Options struct {
	// Listen is host:port; port 0 picks a free one.
	Listen string
	// Username and Password, when Username is set, are the only
	// credentials the broker accepts. Without them it accepts every client,
	// which Start allows on a loopback address only.
	Username, Password string
}

// Start serves MQTT on addr (a loopback address) to every client.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	return StartWith(Options{Listen: addr}, log)
}

// StartWith listens on opts.Listen and serves MQTT 3.1.1 and 5 over TCP. A
// broker without credentials on an address beyond loopback is refused: it
// would be an open relay for anyone who can reach the box.
func StartWith(opts Options, log *slog.Logger) (*Broker, error) {
	addr := opts.Listen
	open := opts.Username == ""
	if open && !loopbackHost(addr) {
		return nil, errOpen(addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded_broker.listen: %s is already in use (is mosquitto running?); "+
				"stop that broker, choose another embedded_broker.listen, or set embedded_broker.enabled: false "+
				"and point broker.urls at the running broker", addr)
		}
		return nil, fmt.Errorf("embedded_broker.listen: %w", err)
	}
	// A host name: judge the address it was bound to.
	if ta, ok := ln.Addr().(*net.TCPAddr); open && (!ok || !ta.IP.IsLoopback()) {
		ln.Close()
		return nil, errOpen(addr)
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		// mochi logs every client at info; keep only its warnings.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}),
	})
	var hook mqtt.Hook = new(auth.AllowHook)
	if opts.Username != "" {
		hook = &passwordHook{user: []byte(opts.Username), pass: []byte(opts.Password)}
	}
	if err := srv.AddHook(hook, nil); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.AddListener(NewListener("tcp", ln, &srv.Listeners.ClientsWg)); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, err
	}
	return &Broker{srv: srv, addr: ln.Addr().String()}, nil
}

// loopbackHost is false for a listen address that is beyond loopback on
// its face: an empty host (every interface) or an IP that is not a loopback
// one. A name is judged by the address it is bound to.
func loopbackHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err != nil || ip.IsLoopback()
}

func errOpen(addr string) error {
	return fmt.Errorf("embedded_broker.listen: %s is reachable beyond this machine and the broker has no credentials: "+
		"set embedded_broker.username and embedded_broker.password_file, or listen on 127.0.0.1", addr)
}

// passwordHook lets in the clients that give the one username and
// password, and lets them publish and subscribe to everything.
type passwordHook struct {
	mqtt.HookBase
	user, pass []byte
}

func (h *passwordHook) ID() string { return "gatewayd-password" }

func (h *passwordHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// OnConnectAuthenticate compares in constant time, both fields always.
func (h *passwordHook) OnConnectAuthenticate(_ *mqtt.Client, pk packets.Packet) bool {
	u := subtle.ConstantTimeCompare(pk.Connect.Username, h.user)
	p := subtle.ConstantTimeCompare(pk.Connect.Password, h.pass)
	return u&p == 1
}

func (h *passwordHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// Addr is the address the broker listens on.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error { return b.srv.Close() }

// minLevel passes on only records at or above its level.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.level}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.level}
}
