// Package broker runs the embedded MQTT broker (mochi-mqtt), for a box that
// has none: the quick start and the tests need nothing installed.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
)

// Broker is a running embedded broker.
type Broker struct {
	srv  *mqtt.Server
	addr string
}

// Start listens on addr (host:port; port 0 picks a free one) and serves
// MQTT 3.1.1 and 5 over TCP, accepting every client. It is meant for
// 127.0.0.1: listening elsewhere exposes an unauthenticated broker.
func Start(addr string, log *slog.Logger) (*Broker, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("embedded_broker.listen: %s is already in use (is mosquitto running?); "+
				"stop that broker, choose another embedded_broker.listen, or set embedded_broker.enabled: false "+
				"and point broker.urls at the running broker", addr)
		}
		return nil, fmt.Errorf("embedded_broker.listen: %w", err)
	}
	srv := mqtt.New(&mqtt.Options{
		InlineClient: false,
		// mochi logs every client at info; keep only its warnings.
		Logger: slog.New(minLevel{log.Handler(), slog.LevelWarn}),
	})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
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
