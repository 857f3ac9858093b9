package app

import (
	"log/slog"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
	"github.com/gatewayd/gatewayd/internal/homeassistant"
	"github.com/gatewayd/gatewayd/internal/session"
	"github.com/gatewayd/gatewayd/internal/spool"
)

// Home Assistant discovery (homeassistant.discovery): the announcer learns
// each sensor's quantities from the readings as they enter the buffer
// (observedQueue), sends every config from the session's OnConnect hook
// (before the publisher sees the connection, so before the first reading
// of it), and again when Home Assistant says "online" on its status topic.

// haConfig is what Home Assistant is told of cfg.
func haConfig(cfg *config.Config, version string) homeassistant.Config {
	a := cfg.Broker.Availability
	out := homeassistant.Config{
		Prefix:       cfg.HomeAssistant.Prefix,
		Gateway:      cfg.Gateway.ID,
		Version:      version,
		Format:       cfg.Publish.Format,
		Availability: homeassistant.Availability{Topic: a.Topic, Online: a.Online, Offline: a.Offline},
	}
	for _, s := range cfg.Sensors {
		stale := s.StaleAfter.D()
		if !s.Push() {
			stale = 0
		}
		hs := homeassistant.Sensor{
			Name:   s.Name,
			Model:  homeassistant.Model(s.Type, s.Source),
			Topic:  s.Publish.Topic,
			QoS:    s.Publish.QoS,
			Expire: homeassistant.ExpireAfter(s.Interval.D(), s.Timeout.D(), s.Heartbeat.D(), false, stale),
		}
		for q := range s.Deadband {
			if hs.ExpireOf == nil {
				hs.ExpireOf = map[string]time.Duration{}
			}
			hs.ExpireOf[q] = homeassistant.ExpireAfter(s.Interval.D(), s.Timeout.D(), s.Heartbeat.D(), true, stale)
		}
		out.Sensors = append(out.Sensors, hs)
	}
	return out
}

// newHomeAssistant makes the announcer, when discovery is on.
func (a *App) newHomeAssistant(cfg *config.Config, version string, log *slog.Logger) {
	if !cfg.HomeAssistant.Discovery {
		return
	}
	a.ha = homeassistant.NewAnnouncer(haConfig(cfg, version), a.haDiagnostics, cfg.Broker.Keepalive.D(), log)
	a.ha.OnSent = func(n int) { a.Metrics.HADiscoveryMessages.Add(float64(n)) }
}

// haSession adds the announcer's hooks to the session's options: the
// status subscription with its handler, and OnConnect.
func (a *App) haSession(o *session.Options) {
	if a.ha == nil {
		return
	}
	o.Handlers = append(o.Handlers, session.Handler{Filter: a.ha.StatusTopic(), QoS: 1, Handle: a.ha.HandleStatus})
	o.OnConnect = func(c *session.Conn) { a.ha.OnConnect(c) }
}

// pollerQueue is the buffer as the poller sees it: with discovery on, every
// reading is shown to the announcer before it goes in.
func (a *App) pollerQueue() spool.Queue {
	if a.ha == nil {
		return a.Queue
	}
	return observedQueue{Queue: a.Queue, observe: a.ha.Observe}
}

// observedQueue calls observe with each record's series and topic before
// appending it. With the series already known, that is one map lookup.
type observedQueue struct {
	spool.Queue
	observe func(key, topic string)
}

func (q observedQueue) Append(r *spool.Record) int {
	if r.SeqKey != "" {
		q.observe(r.SeqKey, r.Topic)
	}
	return q.Queue.Append(r)
}

// haDiagnostics is the state of the gateway's diagnostic entities.
func (a *App) haDiagnostics() homeassistant.Diagnostics {
	d := homeassistant.Diagnostics{Buffered: a.Queue.Len()}
	for _, s := range a.Metrics.Sensors.All() {
		d.Sensors++
		if s.Up() {
			d.SensorsUp++
		}
	}
	return d
}

// reloadHomeAssistant applies a reloaded config to the announcer: the
// configs of removed sensors are cleared, everything else is announced
// again, and a sensor added is announced at its first reading. Reload calls
// it before building the session's new options, so that haSession
// subscribes the status topic of a new prefix. homeassistant.discovery
// itself needs a restart (keepRunning).
func (a *App) reloadHomeAssistant(cfg *config.Config) {
	if a.ha == nil {
		return
	}
	// A file that turns discovery off is checked without its rules, but
	// discovery stays on until the restart.
	if !homeassistant.ValidID(cfg.Gateway.ID) {
		a.log.Error("home assistant discovery not reloaded: the new gateway.id cannot be used in its discovery topics; keeping the running one",
			"gateway", cfg.Gateway.ID)
		return
	}
	a.ha.Reload(haConfig(cfg, a.version))
}
