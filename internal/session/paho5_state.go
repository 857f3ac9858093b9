package session

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/packets"
	paholog "github.com/eclipse/paho.golang/paho/log"
	pahosession "github.com/eclipse/paho.golang/paho/session"
)

// state5 is paho.golang's session state (paho/session.SessionManager) for
// one connection: packet identifiers, and the requests waiting for their
// answers. It keeps nothing across connections, since the session's user
// resends from its own ordered buffer; and instead of a channel per
// publish that a goroutine must wait on, it completes the publish's token
// when the PUBACK (or PUBCOMP) comes.
type state5 struct {
	// quota is the broker's Receive Maximum: one element per QoS 1 or 2
	// publish in flight (set at CONNACK, before any publish).
	quota chan struct{}
	// gone is closed when the connection is lost.
	gone chan struct{}
	// onLost, when set, is told first when the connection is lost (with
	// the broker's DISCONNECT, if there was one).
	onLost func(*packets.Disconnect)

	mu      sync.Mutex
	conn    io.Writer
	next    *token // the token of the publish being added (client5.pubMu)
	pending map[uint16]request
	lastID  uint16
	lost    bool
	// received holds the ids of QoS 2 messages that arrived and were
	// passed on, until their PUBREL: a resend is not passed on again.
	received map[uint16]bool
}

// request is a packet of gatewayd's waiting for its answer.
type request struct {
	tok  *token                       // PUBLISH
	resp chan<- packets.ControlPacket // SUBSCRIBE, UNSUBSCRIBE
}

func newState5() *state5 {
	return &state5{gone: make(chan struct{}), pending: map[uint16]request{}, received: map[uint16]bool{}}
}

func (s *state5) setNext(t *token) {
	s.mu.Lock()
	s.next = t
	s.mu.Unlock()
}

// takeNext returns the token set by setNext unless AddToSession took it.
func (s *state5) takeNext() *token {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.next
	s.next = nil
	return t
}

// ConAckReceived implements SessionManager.
func (s *state5) ConAckReceived(conn io.Writer, _ *packets.Connect, _ *packets.Connack) error {
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	return nil
}

// ConnectionLost implements SessionManager: every request still waiting
// fails.
func (s *state5) ConnectionLost(dp *packets.Disconnect) error {
	s.mu.Lock()
	if s.lost {
		s.mu.Unlock()
		return nil
	}
	if s.onLost != nil {
		s.onLost(dp)
	}
	s.lost = true
	close(s.gone)
	pending := s.pending
	s.pending = map[uint16]request{}
	s.mu.Unlock()
	for _, r := range pending {
		s.finish(r, nil, errLost)
	}
	return nil
}

// finish answers a request: a publish's token with err, a subscribe's
// channel with the packet (the zero packet when the connection was lost).
func (s *state5) finish(r request, pkt *packets.ControlPacket, err error) {
	if r.tok != nil {
		r.tok.complete(err)
		select {
		case <-s.quota:
		default:
		}
		return
	}
	if pkt == nil {
		pkt = &packets.ControlPacket{}
	}
	select {
	case r.resp <- *pkt: // buffered by paho
	default:
	}
}

// AddToSession implements SessionManager: it gives the packet an
// identifier and records who waits for its answer. It never blocks (the
// Receive Maximum is client5's quota).
func (s *state5) AddToSession(_ context.Context, packet pahosession.Packet, resp chan<- packets.ControlPacket) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lost || s.conn == nil {
		return pahosession.ErrNoConnection
	}
	r := request{resp: resp}
	if packet.Type() == packets.PUBLISH {
		r.tok = s.next
		if r.tok == nil {
			return errors.New("publish without a token")
		}
		s.next = nil
	}
	for range 65535 {
		s.lastID++
		if s.lastID == 0 {
			s.lastID = 1
		}
		if _, used := s.pending[s.lastID]; !used {
			s.pending[s.lastID] = r
			packet.SetIdentifier(s.lastID)
			return nil
		}
	}
	if r.tok != nil {
		s.next = r.tok // not taken: the publisher completes it
	}
	return pahosession.ErrPacketIdentifiersExhausted
}

// end removes the request with this id, if there is one.
func (s *state5) end(id uint16) (request, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.pending[id]
	delete(s.pending, id)
	return r, ok
}

func (s *state5) write(p interface {
	WriteTo(io.Writer) (int64, error)
}) {
	s.mu.Lock()
	conn, lost := s.conn, s.lost
	s.mu.Unlock()
	if conn != nil && !lost {
		p.WriteTo(conn) // a failed write shows as a failed read too
	}
}

// PacketReceived implements SessionManager.
func (s *state5) PacketReceived(recv *packets.ControlPacket, pubChan chan<- *packets.Publish) error {
	switch p := recv.Content.(type) {
	case *packets.Puback:
		if r, ok := s.end(p.PacketID); ok {
			s.finish(r, recv, ackError(p.ReasonCode, p.Properties))
		}
	case *packets.Pubrec:
		if p.ReasonCode >= 0x80 {
			if r, ok := s.end(p.PacketID); ok {
				s.finish(r, recv, ackError(p.ReasonCode, p.Properties))
			}
			return nil
		}
		s.write(&packets.Pubrel{PacketID: p.PacketID})
	case *packets.Pubcomp:
		if r, ok := s.end(p.PacketID); ok {
			s.finish(r, recv, ackError(p.ReasonCode, p.Properties))
		}
	case *packets.Suback:
		if r, ok := s.end(p.PacketID); ok {
			s.finish(r, recv, nil)
		}
	case *packets.Unsuback:
		if r, ok := s.end(p.PacketID); ok {
			s.finish(r, recv, nil)
		}
	case *packets.Publish:
		if p.QoS == 2 && p.Duplicate {
			s.mu.Lock()
			seen := s.received[p.PacketID]
			s.mu.Unlock()
			if seen {
				s.write(&packets.Pubrec{PacketID: p.PacketID})
				return nil
			}
		}
		pubChan <- p
	case *packets.Pubrel:
		s.mu.Lock()
		delete(s.received, p.PacketID)
		s.mu.Unlock()
		s.write(&packets.Pubcomp{PacketID: p.PacketID})
	}
	return nil
}

// ackError is the error of an acknowledgement's reason code: nil for a
// success (below 0x80, 0x10 "no matching subscribers" included).
func ackError(code byte, props *packets.Properties) error {
	if code < 0x80 {
		return nil
	}
	e := &RefusedError{Code: code}
	if props != nil {
		e.Reason = props.ReasonString
	}
	return e
}

// Ack implements SessionManager: a message that arrived was handled.
func (s *state5) Ack(pb *packets.Publish) error {
	switch pb.QoS {
	case 1:
		s.write(&packets.Puback{PacketID: pb.PacketID})
	case 2:
		s.mu.Lock()
		s.received[pb.PacketID] = true
		s.mu.Unlock()
		s.write(&packets.Pubrec{PacketID: pb.PacketID})
	}
	return nil
}

// Close implements SessionManager.
func (s *state5) Close() error { return s.ConnectionLost(nil) }

// SetErrorLogger implements SessionManager.
func (s *state5) SetErrorLogger(paholog.Logger) {}

// SetDebugLogger implements SessionManager.
func (s *state5) SetDebugLogger(paholog.Logger) {}

// pinger5 implements paho.Pinger: a PINGREQ after keepalive without a
// packet sent or received, and the connection declared dead when its
// PINGRESP has not come within pingTimeout, so that a silent broker is
// noticed within 1.25 x keepalive, as with 3.1.1.
type pinger5 struct {
	onFail func(error) // told first, before the client fails the requests

	mu       sync.Mutex
	lastSent time.Time
	lastRecv time.Time
	pingSent time.Time // zero: no ping outstanding
}

func newPinger5(onFail func(error)) *pinger5 {
	now := time.Now()
	return &pinger5{onFail: onFail, lastSent: now, lastRecv: now}
}

// Run implements paho.Pinger.
func (p *pinger5) Run(ctx context.Context, conn net.Conn, keepAlive uint16) error {
	if keepAlive == 0 {
		return nil
	}
	k := time.Duration(keepAlive) * time.Second
	timeout := pingTimeout(k)
	timer := time.NewTimer(k)
	defer timer.Stop()
	errs := make(chan error, 1)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case <-timer.C:
		}
		now := time.Now()
		p.mu.Lock()
		var next time.Time
		if !p.pingSent.IsZero() {
			if now.Sub(p.pingSent) >= timeout {
				p.mu.Unlock()
				err := errors.New("no PINGRESP from the broker within " + timeout.String())
				p.onFail(err)
				return err
			}
			next = p.pingSent.Add(timeout)
		} else {
			due := p.lastSent
			if p.lastRecv.Before(due) {
				due = p.lastRecv
			}
			due = due.Add(k)
			if now.Before(due) {
				next = due
			} else {
				p.pingSent = now
				next = now.Add(timeout)
				go func() {
					if _, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(conn); err != nil {
						select {
						case errs <- err:
						default:
						}
					}
				}()
			}
		}
		p.mu.Unlock()
		timer.Reset(next.Sub(now))
	}
}

// PacketSent implements paho.Pinger.
func (p *pinger5) PacketSent() {
	p.mu.Lock()
	p.lastSent = time.Now()
	p.mu.Unlock()
}

// PacketReceived implements paho.Pinger.
func (p *pinger5) PacketReceived() {
	p.mu.Lock()
	p.lastRecv = time.Now()
	p.mu.Unlock()
}

// PingResp implements paho.Pinger.
func (p *pinger5) PingResp() {
	p.mu.Lock()
	p.pingSent = time.Time{}
	p.mu.Unlock()
}

// SetDebug implements paho.Pinger.
func (p *pinger5) SetDebug(paholog.Logger) {}
