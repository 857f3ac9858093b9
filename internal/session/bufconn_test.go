package session

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countConn counts the reads and writes that reach a real connection.
type countConn struct {
	net.Conn
	reads, writes atomic.Int64
}

func (c *countConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c *countConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a connected pair of TCP connections on 127.0.0.1.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// Packets written by several goroutines arrive whole and, per writer, in
// order; a burst leaves in far fewer network writes than packets.
func TestBufConnWritesBatchedInOrder(t *testing.T) {
	c, s := tcpPair(t)
	cc := &countConn{Conn: c}
	b := newBufConn(cc, 5*time.Second)
	defer b.Close()

	const writers, each = 4, 2000
	got := make(chan []byte, 1)
	go func() {
		all, _ := io.ReadAll(io.LimitReader(s, int64(writers*each*8)))
		got <- all
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				// An 8-byte "packet": writer, sequence.
				if _, err := fmt.Fprintf(b, "%d%07d", w, i); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var all []byte
	select {
	case all = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("not everything arrived")
	}
	next := make([]int, writers)
	for i := 0; i+8 <= len(all); i += 8 {
		var w, n int
		if _, err := fmt.Sscanf(string(all[i:i+8]), "%1d%07d", &w, &n); err != nil {
			t.Fatalf("packet %d: %q: %v", i/8, all[i:i+8], err)
		}
		if n != next[w] {
			t.Fatalf("writer %d: packet %d after %d", w, n, next[w]-1)
		}
		next[w]++
	}
	for w, n := range next {
		if n != each {
			t.Errorf("writer %d: %d packets arrived, want %d", w, n, each)
		}
	}
	if nw := cc.writes.Load(); nw >= writers*each/2 {
		t.Errorf("%d network writes for %d packets: not batched", nw, writers*each)
	}
	t.Logf("%d packets in %d network writes", writers*each, cc.writes.Load())
}

// A lone write leaves at once: nothing waits for more to come.
func TestBufConnLoneWriteNotDelayed(t *testing.T) {
	c, s := tcpPair(t)
	b := newBufConn(c, 5*time.Second)
	defer b.Close()
	buf := make([]byte, 2)
	for i := range 20 {
		start := time.Now()
		if _, err := b.Write([]byte{0xc0, 0x00}); err != nil { // PINGREQ
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatalf("write %d did not arrive: %v", i, err)
		}
		// Generous for -race on a loaded machine; a timer-based batcher
		// would show its interval on every one of the 20.
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("write %d took %s to arrive", i, d)
		}
		time.Sleep(time.Millisecond) // let the flusher go idle between writes
	}
}

// Reads are buffered: a burst of small packets is read in a few network
// reads, even when the reader asks for a byte at a time, as paho does.
func TestBufConnReadsBuffered(t *testing.T) {
	c, s := tcpPair(t)
	cc := &countConn{Conn: c}
	b := newBufConn(cc, 5*time.Second)
	defer b.Close()
	var want bytes.Buffer
	for i := range 500 {
		want.Write([]byte{0x40, 0x02, byte(i >> 8), byte(i)}) // PUBACK
	}
	if _, err := s.Write(want.Bytes()); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, want.Len())
	one := make([]byte, 1)
	for len(got) < want.Len() {
		n, err := b.Read(one)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, one[:n]...)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes read differ from those sent")
	}
	if r := cc.reads.Load(); r > 10 {
		t.Errorf("%d network reads for %d bytes read a byte at a time", r, want.Len())
	}
}

// Close lets what is pending leave first (a DISCONNECT), then closes.
func TestBufConnCloseFlushes(t *testing.T) {
	c, s := tcpPair(t)
	b := newBufConn(c, 5*time.Second)
	payload := bytes.Repeat([]byte("x"), 100<<10)
	b.Write(payload)
	b.Write([]byte{0xe0, 0x00}) // DISCONNECT
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(payload)+2 || !bytes.Equal(all[len(all)-2:], []byte{0xe0, 0x00}) {
		t.Fatalf("read %d bytes before EOF, want %d ending in DISCONNECT", len(all), len(payload)+2)
	}
	// paho.mqtt.golang writes after closing in its shutdown and ignores
	// only a closed net.Conn's error, by its text.
	if _, err := b.Write([]byte{1}); !errors.Is(err, net.ErrClosed) || !strings.Contains(fmt.Sprint(err), "use of closed network connection") {
		t.Errorf("a write after Close: %v, want net.ErrClosed", err)
	}
}

// A peer that takes no bytes: writers block once maxPending waits, and the
// network write fails after writeTimeout, which closes the connection (the
// client's reader sees it) and fails every later Write.
func TestBufConnStuckPeerFailsTheConnection(t *testing.T) {
	c, _ := tcpPair(t) // the server side never reads
	b := newBufConn(c, 300*time.Millisecond)
	defer b.Close()
	chunk := make([]byte, 64<<10)
	failed := make(chan error, 1)
	go func() {
		for {
			if _, err := b.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
	}()
	select {
	case err := <-failed:
		t.Logf("write failed: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("writes to a peer that reads nothing never failed")
	}
	b.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Error("the connection still reads after a failed write")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("the connection was not closed after a failed write")
	}
}

// abort drops the connection at once, without waiting for a peer that
// takes nothing.
func TestBufConnAbortIsImmediate(t *testing.T) {
	c, _ := tcpPair(t)
	b := newBufConn(c, time.Minute)
	wrote := make(chan error, 1)
	var lastWrite atomic.Int64
	lastWrite.Store(time.Now().UnixNano())
	go func() {
		for {
			if _, err := b.Write(make([]byte, 64<<10)); err != nil {
				wrote <- err
				return
			}
			lastWrite.Store(time.Now().UnixNano())
		}
	}()
	// Wait until the socket is full: a Write has been blocked for a while.
	for deadline := time.Now().Add(20 * time.Second); time.Since(time.Unix(0, lastWrite.Load())) < 300*time.Millisecond; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the socket never filled up")
		}
	}
	start := time.Now()
	b.abort()
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the flusher did not end after abort")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("abort took %s", d)
	}
	select {
	case <-wrote:
	case <-time.After(5 * time.Second):
		t.Fatal("a writer blocked behind maxPending stayed blocked after abort")
	}
}

// After lingerOnClose, Close sends what is pending and half-closes; the
// connection stays open for reading (what the broker still sends arrives)
// until the peer closes it, also when the client closes it twice (paho
// does); a peer that never closes is given closeLinger.
func TestBufConnLingersUntilThePeerCloses(t *testing.T) {
	c, s := tcpPair(t)
	b := newBufConn(c, time.Minute)
	b.lingerOnClose(closeLinger)
	read := make(chan []byte, 1)
	go func() { // the client's reader
		got, _ := io.ReadAll(b)
		read <- got
	}()
	if _, err := b.Write([]byte("DISCONNECT")); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := io.ReadAll(s); err != nil || string(got) != "DISCONNECT" {
		t.Fatalf("the peer read %q, %v: want the pending bytes, then the half-close", got, err)
	}
	select {
	case <-b.ended:
		t.Fatal("closed before the peer closed")
	default:
	}
	s.Write([]byte("PUBACK"))
	s.Close()
	select {
	case <-b.ended:
	case <-time.After(closeLinger / 2):
		t.Fatal("not closed when the peer closed")
	}
	if got := <-read; string(got) != "PUBACK" {
		t.Errorf("the client read %q after its Close", got)
	}

	// A peer that does not close.
	c, _ = tcpPair(t)
	b = newBufConn(c, time.Minute)
	b.lingerOnClose(closeLinger)
	go io.Copy(io.Discard, b)
	start := time.Now()
	b.Close()
	b.waitEnded(closeFlushWait + closeLinger)
	if d := time.Since(start); d < closeLinger || d > closeLinger+closeFlushWait {
		t.Errorf("lingered %s for a peer that stays, want closeLinger (%s)", d, closeLinger)
	}
}
