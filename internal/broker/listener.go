package broker

import (
	"log/slog"
	"net"
	"sync"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// Listener serves MQTT on a net.Listener for mochi, like mochi's own
// listeners.Net, but stops cleanly. mochi counts connected clients in a
// WaitGroup that Server.Close waits on; a connection accepted while the
// server closes adds to it concurrently with that Wait (a data race, and a
// Close that can wait for a client nobody disconnects). Listener holds one
// count of that WaitGroup for each connection it hands over, so mochi's own
// count never starts from zero during a Close, and on Close it stops
// accepting, waits for its accept loop, and closes every connection it
// handed over, so that the Wait ends.
type Listener struct {
	id  string
	ln  net.Listener
	wg  *sync.WaitGroup // the server's ClientsWg
	log *slog.Logger

	mu       sync.Mutex
	started  bool
	closed   bool
	conns    map[net.Conn]struct{}
	loopDone chan struct{}
}

// NewListener wraps ln; wg is the server's Listeners.ClientsWg.
func NewListener(id string, ln net.Listener, wg *sync.WaitGroup) *Listener {
	return &Listener{id: id, ln: ln, wg: wg, conns: map[net.Conn]struct{}{}, loopDone: make(chan struct{})}
}

// ID implements listeners.Listener.
func (l *Listener) ID() string { return l.id }

// Address implements listeners.Listener.
func (l *Listener) Address() string { return l.ln.Addr().String() }

// Protocol implements listeners.Listener.
func (l *Listener) Protocol() string { return "tcp" }

// Init implements listeners.Listener.
func (l *Listener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve implements listeners.Listener: it accepts until Close.
func (l *Listener) Serve(establish listeners.EstablishFn) {
	defer close(l.loopDone)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.started = true
	l.mu.Unlock()
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			if err := establish(l.id, conn); err != nil && l.log != nil {
				l.log.Debug("client connection ended", "err", err)
			}
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// Close implements listeners.Listener. mochi calls it before it waits for
// its clients.
func (l *Listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	started := l.started
	l.mu.Unlock()
	closeClients(l.id)
	l.ln.Close()
	if started {
		<-l.loopDone
	}
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}
