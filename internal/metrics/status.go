package metrics

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// StatusSource gives a snapshot of the daemon's state for the status page
// (/) and /api/status. internal/app implements it from the session, the
// buffer and the per-sensor stats. Status must be cheap and safe to call
// from any goroutine.
type StatusSource interface {
	Status() Status
}

// Status is one snapshot. Its JSON form is /api/status, a public contract
// for scripts (docs/STATUS.md): add fields freely, never rename one.
type Status struct {
	Gateway string    `json:"gateway"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`    // when the snapshot was taken
	Started time.Time `json:"started"` // when the daemon started
	Healthy bool      `json:"healthy"` // as /healthz: every loop makes progress
	// HealthError names the stalled loops when Healthy is false.
	HealthError string         `json:"health_error,omitempty"`
	Broker      BrokerStatus   `json:"broker"`
	Buffer      BufferStatus   `json:"buffer"`
	Sensors     []SensorStatus `json:"sensors"`
}

// BrokerStatus is the MQTT session.
type BrokerStatus struct {
	Connected bool `json:"connected"`
	// Protocol is the MQTT version of the current or last connection: 4
	// (3.1.1) or 5; 0 before the first connection.
	Protocol int `json:"protocol"`
	// URL is the broker connected to, or when disconnected the last one
	// that was ("" before the first connection).
	URL string `json:"url"`
	// Since is when the session last connected (Connected) or was lost
	// (not Connected; the start of the daemon when it never connected).
	Since           time.Time `json:"since"`
	Connects        uint64    `json:"connects"`   // successful connects, the first included
	Reconnects      uint64    `json:"reconnects"` // connects after the first
	ConnectionLost  uint64    `json:"connection_lost"`
	ConnectFailures uint64    `json:"connect_failures"`
	// Refused counts the readings the broker refused (MQTT 5), which were
	// dropped.
	Refused uint64 `json:"refused"`
	// LastError is why the last connection was lost ("" when none was).
	LastError string `json:"last_error,omitempty"`
}

// BufferStatus is the buffer of readings waiting to be published.
type BufferStatus struct {
	Waiting          int     `json:"waiting"`
	Bytes            int64   `json:"bytes"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"` // 0 when none waits
	Dropped          uint64  `json:"dropped"`
	Durable          bool    `json:"durable"` // kept on disk
}

// SensorStatus is one sensor.
type SensorStatus struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Up       bool    `json:"up"` // the last read succeeded
	Reads    uint64  `json:"reads"`
	Failures uint64  `json:"failures"` // failed reads since the start
	Values   []Value `json:"values"`
	// LastReading is the time of the last successful read (null: never);
	// AgeSeconds its age when the snapshot was taken (null: never).
	LastReading   *time.Time `json:"last_reading"`
	AgeSeconds    *float64   `json:"age_seconds"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorTime *time.Time `json:"last_error_time,omitempty"`
}

// Value is the last value of one quantity.
type Value struct {
	Quantity string  `json:"quantity"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// SetStatus makes / the status page and /api/status its JSON, from src.
// Without it, / is a page of links and /api/status is 404.
func (s *Server) SetStatus(src StatusSource) { s.status = src }

func (s *Server) apiStatus(w http.ResponseWriter, _ *http.Request) {
	if s.status == nil {
		http.NotFound(w, nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.status.Status()); err != nil {
		s.log.Debug("writing /api/status", "err", err)
	}
}

// CounterSum adds up the children of a counter vector.
func CounterSum(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	go func() { c.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		sum += CounterValue(m)
	}
	return sum
}

// CounterValue reads a counter's (or a gauge's) current value.
func CounterValue(c prometheus.Metric) float64 {
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		return 0
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
