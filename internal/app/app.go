// Package app wires gatewayd's components (buffer, embedded broker, session,
// sensors, publisher, HTTP) from a config, runs them, and shuts them down in
// order. cmd/gatewayd adds flags, signals and systemd notification; tests
// run the very same wiring in-process.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatewayd/gatewayd/internal/broker"
	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/gateway"
	"github.com/gatewayd/gatewayd/internal/homeassistant"
	"github.com/gatewayd/gatewayd/internal/logging"
	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// DrainTimeout is how long a shutdown waits for buffered readings to be
// published (SPEC.md: at most 5 s).
const DrainTimeout = 5 * time.Second

// staleLoop is how long a loop may go without progress before /healthz
// fails and the systemd watchdog stops being pinged.
const staleLoop = 15 * time.Second

// App is a configured daemon, ready to run.
type App struct {
	Metrics   *metrics.Metrics
	Liveness  *metrics.Liveness
	Queue     spool.Queue
	Session   *session.Session
	Poller    *gateway.Poller
	Publisher *gateway.Publisher

	// Logs, when set, is the log switch that a reload sets to the new
	// log.level and log.format.
	Logs *logging.Switch

	cfg      atomic.Pointer[config.Config] // as running: Reload replaces it (Config)
	log      *slog.Logger
	http     *metrics.Server
	broker   *broker.Broker
	msgs     *gateway.MessageLogger
	reloadMu sync.Mutex
	ha       *homeassistant.Announcer // nil unless homeassistant.discovery

	version   string
	started   time.Time
	connWatch connWatch // for Status
}

// New builds every component and opens every listener, so that a taken
// port or a locked buffer is reported before the daemon says it is ready.
// On error, whatever was opened is closed again.
func New(cfg *config.Config, log *slog.Logger, version string) (_ *App, err error) {
	a := &App{log: log, Metrics: metrics.New(version), Liveness: metrics.NewLiveness(staleLoop),
		version: version, started: time.Now()}
	a.cfg.Store(cfg)
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	m := a.Metrics
	a.Queue, err = spool.Open(spool.Options{
		MaxMessages: cfg.Buffer.MaxMessages,
		MaxBytes:    int64(cfg.Buffer.MaxBytes),
		Dir:         cfg.Buffer.Dir,
		Logger:      log.With("component", "buffer"),
		OnDiskError: func(error) { m.BufferDiskErrors.Inc() },
		OnCorrupt:   func(string) { m.BufferCorrupt.Inc() },
		OnCommit:    m.BufferDiskCommits.Inc,
	})
	if err != nil {
		return nil, fmt.Errorf("buffer: %w", err)
	}
	m.WatchBuffer(a.Queue)

	if e := cfg.EmbeddedBroker; e.Enabled {
		pw, err := e.ReadPassword()
		if err != nil {
			return nil, err
		}
		a.broker, err = broker.StartWith(broker.Options{Listen: e.Listen, Username: e.Username, Password: pw.Reveal()},
			log.With("component", "broker"))
		if err != nil {
			return nil, err
		}
		log.Info("embedded broker listening", "addr", a.broker.Addr(), "auth", e.Username != "")
	}

	a.msgs = gateway.NewMessageLogger(cfg.Subscriptions, m, log.With("component", "subscriptions"))
	a.newHomeAssistant(cfg, version, log.With("component", "homeassistant"))
	if a.Session, err = session.New(a.sessionOptions(cfg), log.With("component", "session"), m, a.Liveness); err != nil {
		return nil, err
	}
	if a.Poller, err = gateway.NewPoller(cfg, a.pollerQueue(), m, log.With("component", "sensors"), a.Liveness); err != nil {
		return nil, err
	}
	a.Publisher = gateway.NewPublisher(a.Queue, a.Session, cfg.Buffer.MaxInflight, cfg.Broker.Keepalive.D(),
		m, log.With("component", "publisher"), a.Liveness)
	a.http = metrics.NewServer(m, a.Liveness, a.Session.Connected, version, log.With("component", "http"))
	a.http.SetStatus(a)
	if f := cfg.Metrics.WebConfigFile; f != "" {
		if err := a.http.SetWebConfig(f); err != nil {
			return nil, fmt.Errorf("metrics.web_config_file: %w", err)
		}
	}
	if err := a.http.Listen(cfg.Metrics.Listen); err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	m.ConfigReloadOK.Set(1)
	m.ConfigReloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
	return a, nil
}

// sessionOptions are the session's settings from cfg, at start and at a
// reload: one place, so that a new broker key is wired once.
func (a *App) sessionOptions(cfg *config.Config) session.Options {
	b := cfg.Broker // password_file and TLS files are read at each connect
	var urls []string
	if e := cfg.EmbeddedBroker; cfg.Broker.UseEmbedded && a.broker != nil {
		// Its real port (which may have been given as 0), logged in to as
		// its one user.
		urls = []string{"tcp://" + a.broker.Addr()}
		if b.Username == "" {
			b.Username, b.PasswordFile = e.Username, e.PasswordFile
		}
	}
	o := session.Options{
		Broker:        b,
		URLs:          urls,
		Subscriptions: cfg.Subscriptions,
		OnMessage:     a.msgs.Handle,
		Protocol:      cfg.Broker.Protocol,
		SessionExpiry: cfg.Broker.SessionExpiry.D(),
		MessageExpiry: cfg.Publish.MessageExpiry.D(),
		URLOrder:      cfg.Broker.URLOrder,
		GatewayID:     cfg.Gateway.ID,
		StateDir:      cfg.Buffer.Dir,
	}
	a.haSession(&o)
	return o
}

// Config is the config the daemon runs on: the one it started with, or the
// last one reloaded (with the keys that need a restart as they run).
func (a *App) Config() *config.Config { return a.cfg.Load() }

// HTTPAddr is the address /metrics is served on.
func (a *App) HTTPAddr() string { return a.http.Addr() }

// BrokerAddr is the embedded broker's address ("" when it is off).
func (a *App) BrokerAddr() string {
	if a.broker == nil {
		return ""
	}
	return a.broker.Addr()
}

// Run runs the daemon until ctx ends or a component fails, then shuts down
// in order: stop reading, publish what is buffered (at most DrainTimeout),
// publish "offline", disconnect, close the buffer. onStopping, if set, is
// called when the shutdown begins.
func (a *App) Run(ctx context.Context, onStopping func()) error {
	defer a.close()
	// Each component runs under its own context, cancelled in shutdown
	// order; a component that fails stops the daemon.
	fatal := make(chan error, 5)
	start := func(name string, run func(context.Context) error) (stop func()) {
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := run(cctx); err != nil {
				fatal <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		return func() { cancel(); <-done }
	}
	stopHTTP := start("http", a.http.Run)
	stopWatch := start("status", a.watchConn)
	stopSession := start("session", a.Session.Run)
	stopPublisher := start("publisher", a.Publisher.Run)
	stopPoller := start("poller", a.Poller.Run)
	stopHA := func() {}
	if a.ha != nil {
		stopHA = start("homeassistant", a.ha.Run)
	}

	cfg := a.Config()
	a.log.Info("gatewayd started", "gateway", cfg.Gateway.ID, "sensors", len(cfg.Sensors),
		"metrics", "http://"+a.http.Addr()+"/metrics", "buffer_durable", a.Queue.Durable())
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("shutting down", "buffered", a.Queue.Len())
	case runErr = <-fatal:
		a.log.Error("shutting down after a failure", "err", runErr)
	}
	if onStopping != nil {
		onStopping()
	}
	stopPoller()
	dctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	left := a.Publisher.Drain(dctx)
	cancel()
	stopPublisher()
	if left > 0 {
		if a.Queue.Durable() {
			a.log.Info("readings kept on disk for the next start", "count", left)
		} else {
			a.log.Warn("readings not published before shutdown", "count", left)
		}
	}
	stopHA()
	stopSession()
	stopWatch()
	stopHTTP()
	return runErr
}

func (a *App) close() {
	if a.Queue != nil {
		if err := a.Queue.Close(); err != nil {
			a.log.Error("closing the buffer", "err", err)
		}
	}
	if a.broker != nil {
		a.broker.Close()
	}
}
