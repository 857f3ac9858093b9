package testbroker

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections from a port of 127.0.0.1 to a target, and
// can break the link the ways networks break: Cut closes every connection
// and refuses new ones (a broker gone), Blackhole keeps the connections open
// but forwards nothing (a frozen broker or a dropped link: the half-open
// case TCP alone does not notice).
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	mu    sync.Mutex
	mode  int
	conns map[net.Conn]bool
	wake  chan struct{} // closed when mode goes back to forwarding
	done  chan struct{} // closed when the test ends
}

const (
	forwarding = iota
	cut
	blackhole
)

// NewProxy starts a proxy to target; it stops with the test.
func NewProxy(t testing.TB, target string) *Proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{t: t, ln: ln, target: target, conns: map[net.Conn]bool{}, wake: make(chan struct{}), done: make(chan struct{})}
	go p.accept()
	t.Cleanup(func() {
		close(p.done)
		ln.Close()
		p.closeAll()
	})
	return p
}

// URL is tcp://host:port of the proxy.
func (p *Proxy) URL() string { return "tcp://" + p.ln.Addr().String() }

// Cut closes every connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.mode = cut
	p.mu.Unlock()
	p.closeAll()
}

// Blackhole stops forwarding in both directions, keeping connections open,
// as a frozen (SIGSTOPped) broker does: what is sent waits in the socket
// buffers, nothing is answered; new connections are accepted and hang.
func (p *Proxy) Blackhole() {
	p.mu.Lock()
	p.mode = blackhole
	p.mu.Unlock()
}

// Restore forwards again; black-holed connections resume where they were.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.mode = forwarding
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

func (p *Proxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == cut {
		c.Close()
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(server) {
		client.Close()
		return
	}
	go p.pipe(server, client)
	p.pipe(client, server)
}

// pipe copies from src to dst, holding what it read while black-holed.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 4<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.waitForwarding() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitForwarding blocks while black-holed; false when the test ended.
func (p *Proxy) waitForwarding() bool {
	for {
		p.mu.Lock()
		mode, wake := p.mode, p.wake
		p.mu.Unlock()
		switch mode {
		case forwarding:
			return true
		case cut:
			return false
		}
		select {
		case <-wake:
		case <-p.done:
			return false
		}
	}
}
