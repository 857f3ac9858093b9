package app

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/gatewayd/gatewayd/internal/metrics"
	"github.com/gatewayd/gatewayd/internal/sensors"
	"github.com/gatewayd/gatewayd/internal/session"
)

// connWatch remembers when the session's connection last changed, for the
// status page: the session itself keeps only the open connection.
type connWatch struct {
	mu      sync.Mutex
	conn    *session.Conn // the open one, or nil
	url     string        // of the current or last connection
	proto   int
	since   time.Time
	lastErr string // why the last connection was lost
}

// watchConn follows the session's connection changes until ctx ends.
func (a *App) watchConn(ctx context.Context) error {
	for {
		c, changed := a.Session.Current()
		w := &a.connWatch
		w.mu.Lock()
		if c != w.conn {
			w.since = time.Now()
			if c != nil {
				w.url, w.proto = c.URL(), c.Protocol()
			} else if err := w.conn.Err(); err != nil {
				w.lastErr = err.Error()
			}
			w.conn = c
		}
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// Status implements metrics.StatusSource: a snapshot of the session, the
// buffer and every sensor, for / and /api/status.
func (a *App) Status() metrics.Status {
	now := time.Now()
	m := a.Metrics
	st := metrics.Status{
		Gateway: a.Config().Gateway.ID,
		Version: a.version,
		Time:    now.UTC(),
		Started: a.started.UTC(),
		Healthy: true,
	}
	if err := a.Liveness.Check(); err != nil {
		st.Healthy, st.HealthError = false, err.Error()
	}

	// The connection itself says whether it is open and where it goes; the
	// watcher only remembers since when and why the last one was lost, so a
	// snapshot taken right after a connect is never "connected" to no URL.
	conn, _ := a.Session.Current()
	w := &a.connWatch
	w.mu.Lock()
	b := metrics.BrokerStatus{
		URL:       w.url,
		Protocol:  w.proto,
		Since:     w.since,
		LastError: w.lastErr,
	}
	if conn != w.conn {
		b.Since = now // the watcher has not seen this change yet
	}
	w.mu.Unlock()
	if conn != nil {
		b.Connected = a.Session.Connected()
		b.URL, b.Protocol = conn.URL(), conn.Protocol()
	}
	if b.Since.IsZero() {
		b.Since = a.started
	}
	b.Since = b.Since.UTC()
	b.Connects = uint64(metrics.CounterValue(m.MQTTConnects))
	b.Reconnects = max(b.Connects, 1) - 1
	b.ConnectionLost = uint64(metrics.CounterValue(m.MQTTConnectionLost))
	b.ConnectFailures = uint64(metrics.CounterValue(m.MQTTConnectFailures))
	b.Refused = uint64(metrics.CounterSum(m.MQTTPublishRefused))
	st.Broker = b

	st.Buffer = metrics.BufferStatus{
		Waiting: a.Queue.Len(),
		Bytes:   a.Queue.Bytes(),
		Dropped: uint64(metrics.CounterValue(m.BufferDropped)),
		Durable: a.Queue.Durable(),
	}
	if t, ok := a.Queue.Oldest(); ok {
		st.Buffer.OldestAgeSeconds = max(0, now.Sub(t).Seconds())
	}

	all := m.Sensors.All()
	st.Sensors = make([]metrics.SensorStatus, 0, len(all))
	for _, s := range all {
		ss := metrics.SensorStatus{
			Name:     s.Name(),
			Type:     s.Type(),
			Up:       s.Up(),
			Reads:    s.Reads.Load(),
			Failures: s.ReadErrors.Load(),
			Values:   []metrics.Value{},
		}
		if ns := s.LastSuccess(); ns > 0 {
			t := time.Unix(0, ns).UTC()
			age := max(0, now.Sub(t).Seconds())
			ss.LastReading, ss.AgeSeconds = &t, &age
		}
		if e := s.LastError(); e != nil {
			t := time.Unix(0, e.Time).UTC()
			ss.LastError, ss.LastErrorTime = e.Err, &t
		}
		s.Values(func(q string, v float64) {
			if !math.IsNaN(v) && !math.IsInf(v, 0) { // JSON has no NaN
				ss.Values = append(ss.Values, metrics.Value{Quantity: q, Value: v, Unit: sensors.Unit(q)})
			}
		})
		st.Sensors = append(st.Sensors, ss)
	}
	return st
}
