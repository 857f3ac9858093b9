package metrics

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/exporter-toolkit/web"
)

// BeatInterval is how often an idle loop beats. It is a third of the age at
// which the daemon calls a loop stale, and rare enough that an idle daemon
// hardly wakes up.
const BeatInterval = 5 * time.Second

// Liveness tracks the daemon's long-running loops. Each loop beats at least
// every BeatInterval; /healthz and the systemd watchdog ping only while
// every registered loop has beaten recently, so a deadlocked loop is seen.
type Liveness struct {
	mu     sync.Mutex
	beats  map[string]time.Time
	maxAge time.Duration
	now    func() time.Time
}

// NewLiveness returns a tracker that calls a loop stale after maxAge.
func NewLiveness(maxAge time.Duration) *Liveness {
	return &Liveness{beats: map[string]time.Time{}, maxAge: maxAge, now: time.Now}
}

// Beat records that the named loop made progress.
func (l *Liveness) Beat(loop string) {
	l.mu.Lock()
	l.beats[loop] = l.now()
	l.mu.Unlock()
}

// Done removes a loop that ended on purpose (at shutdown).
func (l *Liveness) Done(loop string) {
	l.mu.Lock()
	delete(l.beats, loop)
	l.mu.Unlock()
}

// Check returns nil while every loop is fresh, else an error naming the
// stale ones.
func (l *Liveness) Check() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	var stale []string
	for name, t := range l.beats {
		if age := now.Sub(t); age > l.maxAge {
			stale = append(stale, fmt.Sprintf("%s (%s)", name, age.Round(time.Second)))
		}
	}
	if len(stale) == 0 {
		return nil
	}
	sort.Strings(stale)
	return errors.New("stalled loops: " + strings.Join(stale, ", "))
}

// Server serves /metrics, /healthz, /readyz and /.
type Server struct {
	m         *Metrics
	live      *Liveness
	connected func() bool
	version   string
	log       *slog.Logger
	ln        net.Listener
	srv       *http.Server
	scrapes   chan struct{} // bounds concurrent scrapes
	status    StatusSource  // nil: / is a page of links
	webConfig string        // exporter-toolkit web config file; "": plain HTTP, open
	serving   serving       // the listeners served (rebind.go)
}

// NewServer prepares the HTTP server; connected tells /readyz whether the
// broker session is open.
func NewServer(m *Metrics, live *Liveness, connected func() bool, version string, log *slog.Logger) *Server {
	s := &Server{m: m, live: live, connected: connected, version: version, log: log}
	mux := http.NewServeMux()
	s.scrapes = make(chan struct{}, 2)
	mux.HandleFunc("/metrics", s.metrics)
	mux.HandleFunc("/healthz", s.healthz)
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/api/status", s.apiStatus)
	mux.HandleFunc("/{$}", s.index)
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return s
}

// Listen opens the listening socket, so that a taken port is reported
// before the daemon says it is ready.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	return nil
}

// SetWebConfig protects every endpoint with the TLS and basic-auth settings
// of path, a web config file in the format of Prometheus' exporter-toolkit
// (node_exporter's --web.config.file). The file is checked now; after that
// exporter-toolkit reads it again for each request and TLS handshake, so
// changed users and renewed certificates apply without a restart. Call it
// before Run.
func (s *Server) SetWebConfig(path string) error {
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("web config %s: %w", path, err)
	}
	s.webConfig = path
	return nil
}

// Addr is the address listened on (useful with port 0).
func (s *Server) Addr() string { return s.listener().Addr().String() }

// Run serves until ctx ends, then shuts down within a second.
func (s *Server) Run(ctx context.Context) error {
	errc := s.start(nil)
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s.serving.shutdown(sctx)
	return nil
}

// metrics serves the registry and the per-sensor families in the text
// format, gzipped when the scraper accepts it (Prometheus does).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	select {
	case s.scrapes <- struct{}{}:
		defer func() { <-s.scrapes }()
	default:
		http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
		return
	}
	mfs, err := s.m.Registry.Gather()
	if err != nil {
		s.log.Error("gathering metrics", "err", err)
		http.Error(w, "gathering metrics: "+err.Error(), http.StatusInternalServerError)
		return
	}
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	var out io.Writer = w
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		w.Header().Set("Content-Encoding", "gzip")
		gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		defer gz.Close()
		out = gz
	}
	enc := expfmt.NewEncoder(out, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			s.log.Debug("writing metrics", "err", err) // the scraper went away
			return
		}
	}
	if err := s.m.Sensors.WriteText(out); err != nil {
		s.log.Debug("writing metrics", "err", err)
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.live.Check(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, err)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.connected() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not connected to the broker")
		return
	}
	fmt.Fprintln(w, "connected to the broker")
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if s.status != nil {
		s.statusPage(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, `<!doctype html>
<html><head><title>gatewayd</title></head><body>
<h1>gatewayd %s</h1>
<ul>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
<li><a href="/healthz">/healthz</a>: 200 while the daemon's loops are alive</li>
<li><a href="/readyz">/readyz</a>: 200 while connected to the broker</li>
</ul>
</body></html>
`, html.EscapeString(s.version))
}
