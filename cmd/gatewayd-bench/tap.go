package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// tap is a TCP proxy on 127.0.0.1 in front of the broker that reads the
// MQTT packets going through it, so that the moment a reading's PUBACK
// leaves for the client is known to the microsecond without asking the
// client: the first PUBACK of a reading (a PUBLISH whose topic starts with
// prefix; the availability message is not one) on each connection is kept.
// A connection to the tap is refused (closed) while the broker is down.
type tap struct {
	ln     net.Listener
	target string
	prefix string

	mu       sync.Mutex
	acks     []time.Time // first reading PUBACK of each connection, in order
	connacks []time.Time // every CONNACK that went back to the client
	conns    map[net.Conn]bool
	closed   bool
	wg       sync.WaitGroup
}

func newTap(target, prefix string) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	t := &tap{ln: ln, target: target, prefix: prefix, conns: map[net.Conn]bool{}}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *tap) url() string { return "tcp://" + t.ln.Addr().String() }

func (t *tap) close() {
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.ln.Close()
	t.wg.Wait()
}

// firstAckAfter returns the first reading PUBACK of a connection that
// came after t0.
func (t *tap) firstAckAfter(t0 time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range t.acks {
		if a.After(t0) {
			return a, true
		}
	}
	return time.Time{}, false
}

// firstConnackAfter returns the first CONNACK that came after t0.
func (t *tap) firstConnackAfter(t0 time.Time) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range t.connacks {
		if a.After(t0) {
			return a, true
		}
	}
	return time.Time{}, false
}

// waitAck waits for firstAckAfter(t0).
func (t *tap) waitAck(t0 time.Time, timeout time.Duration, alive func() bool) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if a, ok := t.firstAckAfter(t0); ok {
			return a, true
		}
		if alive != nil && !alive() {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, false
}

func (t *tap) track(cs ...net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		t.conns[c] = true
	}
	return true
}

func (t *tap) untrack(cs ...net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(t.conns, c)
	}
}

func (t *tap) accept() {
	defer t.wg.Done()
	for {
		client, err := t.ln.Accept()
		if err != nil {
			return
		}
		upstream, err := net.DialTimeout("tcp", t.target, time.Second)
		if err != nil {
			client.Close() // the broker is down: so is the tap
			continue
		}
		if !t.track(client, upstream) {
			return
		}
		t.wg.Add(2)
		c := &tapConn{t: t, topics: map[uint16]string{}}
		go func() {
			defer t.wg.Done()
			defer t.untrack(client, upstream)
			c.pipe(upstream, client, false)
		}()
		go func() {
			defer t.wg.Done()
			defer t.untrack(client, upstream)
			c.pipe(client, upstream, true)
		}()
	}
}

// tapConn is one proxied connection: the topics of the QoS > 0 publishes
// awaiting their PUBACK, by packet id.
type tapConn struct {
	t      *tap
	mu     sync.Mutex
	topics map[uint16]string
	acked  bool
}

// pipe copies MQTT packets from src to dst, one whole packet per write.
func (c *tapConn) pipe(dst io.Writer, src io.Reader, fromBroker bool) {
	r := bufio.NewReaderSize(src, 64<<10)
	var pkt []byte
	for {
		var err error
		if pkt, err = readPacket(r, pkt[:0]); err != nil {
			return
		}
		typ, body := pkt[0]>>4, pkt[headerLen(pkt):]
		switch {
		case !fromBroker && typ == 3: // PUBLISH
			qos := pkt[0] >> 1 & 3
			if qos > 0 && len(body) >= 2 {
				tl := int(binary.BigEndian.Uint16(body))
				if len(body) >= 2+tl+2 {
					id := binary.BigEndian.Uint16(body[2+tl:])
					c.mu.Lock()
					c.topics[id] = string(body[2 : 2+tl])
					c.mu.Unlock()
				}
			}
		case fromBroker && typ == 2: // CONNACK
			at := time.Now()
			c.t.mu.Lock()
			c.t.connacks = append(c.t.connacks, at)
			c.t.mu.Unlock()
		case fromBroker && typ == 4 && len(body) >= 2: // PUBACK
			at := time.Now()
			id := binary.BigEndian.Uint16(body)
			c.mu.Lock()
			topic, ok := c.topics[id]
			delete(c.topics, id)
			first := ok && !c.acked && strings.HasPrefix(topic, c.t.prefix)
			if first {
				c.acked = true
			}
			c.mu.Unlock()
			if first {
				c.t.mu.Lock()
				c.t.acks = append(c.t.acks, at)
				c.t.mu.Unlock()
			}
		}
		if _, err := dst.Write(pkt); err != nil {
			return
		}
	}
}

// readPacket appends one MQTT control packet (fixed header included) to buf.
func readPacket(r *bufio.Reader, buf []byte) ([]byte, error) {
	b, err := r.ReadByte()
	if err != nil {
		return buf, err
	}
	buf = append(buf, b)
	n, mult := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return buf, errors.New("malformed remaining length")
		}
		d, err := r.ReadByte()
		if err != nil {
			return buf, err
		}
		buf = append(buf, d)
		n += int(d&127) * mult
		mult *= 128
		if d&128 == 0 {
			break
		}
	}
	start := len(buf)
	buf = append(buf, make([]byte, n)...)
	_, err = io.ReadFull(r, buf[start:])
	return buf, err
}

// headerLen is the length of pkt's fixed header.
func headerLen(pkt []byte) int {
	i := 1
	for i < len(pkt) && pkt[i]&128 != 0 {
		i++
	}
	return i + 1
}
