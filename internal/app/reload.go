package app

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
)

// Reload applies next, a config that passed config.Parse and config.Probe,
// in place, while Run runs (SIGHUP). Sensors added, removed or changed take
// effect at once (seq continues per series), subscriptions added are
// subscribed and removed ones unsubscribed, the publish, deadband and log
// settings apply, metrics.listen moves (the new address is opened before
// the old one is closed), and the session reconnects once only when a
// broker.* setting changed. Nothing in the buffer is lost or sent twice.
// The keys that cannot change while running (keepRunning) keep their
// running values and are logged as needing a restart.
//
// A reload fails as a whole, changing nothing, when a sensor's source cannot
// be built or the new metrics address cannot be listened on. Either way the
// outcome is in gatewayd_config_last_reload_successful.
func (a *App) Reload(ctx context.Context, next *config.Config) error {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	if err := a.reload(ctx, next); err != nil {
		a.Metrics.ConfigReloadOK.Set(0)
		return err
	}
	a.Metrics.ConfigReloadOK.Set(1)
	a.Metrics.ConfigReloadTime.Set(float64(time.Now().UnixNano()) / 1e9)
	return nil
}

// ReloadRefused records a reload whose file was refused (it did not parse
// or probe): the daemon keeps running on the config it has.
func (a *App) ReloadRefused() { a.Metrics.ConfigReloadOK.Set(0) }

func (a *App) reload(ctx context.Context, next *config.Config) error {
	cur := a.Config()
	n := *next
	restart := keepRunning(cur, &n)
	if len(restart) > 0 {
		a.log.Warn("config keys changed that apply only at the next start", "keys", strings.Join(restart, ", "))
	}

	// Everything that can fail comes first, so that a failure changes
	// nothing: the new sources, then the new metrics address.
	plan, err := a.Poller.Plan(&n)
	if err != nil {
		return err
	}
	if n.Metrics.Listen != cur.Metrics.Listen {
		if err := a.http.Rebind(n.Metrics.Listen); err != nil {
			plan.Discard()
			return fmt.Errorf("metrics.listen: %w", err)
		}
		a.log.Info("metrics listening", "addr", a.http.Addr())
	}
	a.reloadHomeAssistant(&n) // before the session's options: a new prefix is subscribed
	if err := a.Session.Update(a.sessionOptions(&n)); err != nil {
		plan.Discard()
		return err // options the config accepted: not expected
	}
	a.msgs.SetSubscriptions(n.Subscriptions)
	a.Publisher.SetStall(n.Broker.Keepalive.D())
	if err := a.Poller.Apply(ctx, plan); err != nil {
		return fmt.Errorf("sensors: %w", err)
	}
	if a.Logs != nil {
		a.Logs.Set(n.Log)
	}
	a.cfg.Store(&n)
	ch := plan.Changes
	a.log.Info("config reloaded", "file", n.File, "sensors", len(n.Sensors),
		"added", strings.Join(ch.Added, ","), "removed", strings.Join(ch.Removed, ","), "changed", strings.Join(ch.Changed, ","),
		"broker_changed", brokerChanged(cur, &n))
	return nil
}

// keepRunning sets the keys of next that a reload cannot change to their
// running values, and returns those that differed: buffer.* (the buffer is
// open on its directory with its bounds), embedded_broker.* (the embedded
// broker listens), metrics.web_config_file (the HTTP server serves with it,
// though its content is read again at each request) and
// homeassistant.discovery. A change to one of them is logged and applies at
// the next start.
func keepRunning(cur, next *config.Config) []string {
	changed := changedKeys("buffer", cur.Buffer, next.Buffer)
	changed = append(changed, changedKeys("embedded_broker", cur.EmbeddedBroker, next.EmbeddedBroker)...)
	if cur.Metrics.WebConfigFile != next.Metrics.WebConfigFile {
		changed = append(changed, "metrics.web_config_file")
	}
	next.Buffer = cur.Buffer
	next.EmbeddedBroker = cur.EmbeddedBroker
	next.Metrics.WebConfigFile = cur.Metrics.WebConfigFile
	// Discovery on or off decides how the buffer and the session are wired.
	if cur.HomeAssistant.Discovery != next.HomeAssistant.Discovery {
		changed = append(changed, "homeassistant.discovery")
	}
	next.HomeAssistant.Discovery = cur.HomeAssistant.Discovery
	return changed
}

// changedKeys names the keys (by their yaml tags) whose values differ
// between a and b, two values of one config struct type.
func changedKeys(prefix string, a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := 0; i < va.NumField(); i++ {
		name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, prefix+"."+name)
		}
	}
	return out
}

// brokerChanged reports whether the session's connection settings changed
// (it then reconnects once).
func brokerChanged(cur, next *config.Config) bool {
	return !reflect.DeepEqual(cur.Broker, next.Broker) || cur.Gateway.ID != next.Gateway.ID
}
