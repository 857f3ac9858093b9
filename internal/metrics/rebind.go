package metrics

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
)

// serving tracks the listeners the server serves on, each with its own
// http.Server (exporter-toolkit wraps the handler of the server it is given),
// so that a reload can move it to another address: the new one is served
// before the old one is shut down, and the old one's Serve returning is no
// failure.
type serving struct {
	mu      sync.Mutex
	current net.Listener
	servers map[net.Listener]*http.Server
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

// start serves ln (nil: the listener Listen or an early Rebind opened) in a
// goroutine; its error comes on the returned channel unless ln was retired
// by Rebind.
func (s *Server) start(ln net.Listener) <-chan error {
	sv := &s.serving
	srv := &http.Server{
		Handler:           s.srv.Handler,
		ReadHeaderTimeout: s.srv.ReadHeaderTimeout,
		ReadTimeout:       s.srv.ReadTimeout,
		WriteTimeout:      s.srv.WriteTimeout,
		IdleTimeout:       s.srv.IdleTimeout,
		MaxHeaderBytes:    s.srv.MaxHeaderBytes,
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if ln == nil {
		ln = s.ln
	}
	if sv.errc == nil {
		sv.errc = make(chan error, 1)
		sv.retired = map[net.Listener]bool{}
		sv.servers = map[net.Listener]*http.Server{}
	}
	sv.current = ln
	sv.servers[ln] = srv
	go func() {
		err := web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &s.webConfig}, s.log)
		sv.mu.Lock()
		retired := sv.retired[ln]
		delete(sv.retired, ln)
		sv.mu.Unlock()
		if !retired && !errors.Is(err, http.ErrServerClosed) {
			select {
			case sv.errc <- err:
			default:
			}
		}
	}()
	return sv.errc
}

// shutdown shuts every server down, waiting at most until ctx ends for the
// requests in progress.
func (sv *serving) shutdown(ctx context.Context) {
	sv.mu.Lock()
	servers := sv.servers
	sv.servers = nil
	sv.mu.Unlock()
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
}

// Rebind moves the server to addr (metrics.listen changed by a reload). The
// new address is listened on and served before the old one is shut down, so
// a failure (a port taken) changes nothing. It works while Run runs.
func (s *Server) Rebind(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	sv := &s.serving
	sv.mu.Lock()
	if sv.errc == nil {
		// Run has not started serving yet (a reload right at start): it
		// will serve the new listener.
		prev := s.ln
		s.ln = ln
		sv.mu.Unlock()
		prev.Close()
		return nil
	}
	old := sv.current
	oldSrv := sv.servers[old]
	running := oldSrv != nil // nil: shutdown took the servers
	if running {
		sv.retired[old] = true
		delete(sv.servers, old)
	}
	sv.mu.Unlock()
	if !running {
		ln.Close()
		return errors.New("the metrics server is shutting down")
	}
	s.start(ln)
	go func() { // the requests in progress on the old address finish
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := oldSrv.Shutdown(ctx); err != nil {
			oldSrv.Close()
		}
	}()
	return nil
}
