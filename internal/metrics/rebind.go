package metrics

import (
	"errors"
	"net"
	"sync"
)

// serving tracks the listeners the server serves on, so that a reload can
// move it to another address: the new one is served before the old one is
// closed, and the old one's Serve returning is no failure.
type serving struct {
	mu      sync.Mutex
	current net.Listener
	retired map[net.Listener]bool
	errc    chan error
}

// listener is the listener served now (or to be served by Run).
func (s *Server) listener() net.Listener {
	s.serving.mu.Lock()
	defer s.serving.mu.Unlock()
	if s.serving.current == nil {
		return s.ln
	}
	return s.serving.current
}

// serve serves ln until it is closed.
func (s *Server) serve(ln net.Listener) error { return s.srv.Serve(ln) }

// start serves ln with serve in a goroutine; its error comes on the
// returned channel unless ln was retired by Rebind.
func (sv *serving) start(ln net.Listener, serve func(net.Listener) error) <-chan error {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.errc == nil {
		sv.errc = make(chan error, 1)
		sv.retired = map[net.Listener]bool{}
	}
	sv.current = ln
	go func() {
		err := serve(ln)
		sv.mu.Lock()
		retired := sv.retired[ln]
		delete(sv.retired, ln)
		sv.mu.Unlock()
		if !retired {
			select {
			case sv.errc <- err:
			default:
			}
		}
	}()
	return sv.errc
}

// Rebind moves the server to addr (metrics.listen changed by a reload). The
// new address is listened on and served before the old one is closed, so a
// failure (a port taken) changes nothing. It works while Run runs.
func (s *Server) Rebind(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.serving.mu.Lock()
	old := s.serving.current
	running := s.serving.errc != nil
	if running {
		s.serving.retired[old] = true
	}
	s.serving.mu.Unlock()
	if !running {
		ln.Close()
		return errors.New("the metrics server is not running")
	}
	s.serving.start(ln, s.serve)
	old.Close()
	return nil
}
