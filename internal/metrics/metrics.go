// Package metrics owns the daemon's Prometheus registry, the typed metrics
// the other packages update, and the HTTP server for /metrics, /healthz and
// /readyz. The metric names are a public contract (see SPEC.md): dashboards
// and alert rules depend on them.
package metrics

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every metric of the daemon, registered on its own registry.
type Metrics struct {
	Registry *prometheus.Registry

	MQTTConnected         prometheus.Gauge
	MQTTConnects          prometheus.Counter
	MQTTConnectFailures   prometheus.Counter
	MQTTConnectionLost    prometheus.Counter
	MQTTPublished         prometheus.Counter
	MQTTPublishFailures   prometheus.Counter
	MQTTResent            prometheus.Counter
	MQTTReceived          *prometheus.CounterVec // subscription
	MQTTSubscribeFailures *prometheus.CounterVec // subscription
	MQTTSubscribeRetries  prometheus.Counter
	MQTTPublishRefused    *prometheus.CounterVec // reason
	MQTTLogSuppressed     prometheus.Counter
	ReadingsTaken         prometheus.Counter
	BufferDropped         prometheus.Counter
	BufferDiskErrors      prometheus.Counter
	BufferCorrupt         prometheus.Counter
	BufferDiskCommits     prometheus.Counter
	ConfigReloadOK        prometheus.Gauge
	ConfigReloadTime      prometheus.Gauge
	HADiscoveryMessages   prometheus.Counter

	// Sensors holds the gatewayd_sensor_* metrics; the /metrics handler
	// writes them after what Registry gathers.
	Sensors *SensorSet
}

// BufferStats is what the buffer gauges read at scrape time.
type BufferStats interface {
	Len() int
	Bytes() int64
	Oldest() (time.Time, bool)
	Durable() bool
}

// New creates the metrics on a fresh registry, with the Go and process
// collectors and gatewayd_build_info.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	m := &Metrics{
		Registry:              reg,
		MQTTConnected:         f.gauge("gatewayd_mqtt_connected", "1 while the MQTT session is open, else 0."),
		MQTTConnects:          f.counter("gatewayd_mqtt_connects_total", "Successful CONNACKs, the first connect included."),
		MQTTConnectFailures:   f.counter("gatewayd_mqtt_connect_failures_total", "Connection attempts that failed (refused, timed out, rejected by the broker)."),
		MQTTConnectionLost:    f.counter("gatewayd_mqtt_connection_lost_total", "Connections lost after being up."),
		MQTTPublished:         f.counter("gatewayd_mqtt_messages_published_total", "Readings acknowledged by the broker (QoS 0: written)."),
		MQTTPublishFailures:   f.counter("gatewayd_mqtt_publish_failures_total", "Publishes that failed and were kept for retry or dropped."),
		MQTTResent:            f.counter("gatewayd_mqtt_resent_total", "Readings published again after a reconnect because their acknowledgement had not come."),
		MQTTReceived:          f.counterVec("gatewayd_mqtt_messages_received_total", "Messages that arrived, by the subscription (topic filter) they matched.", "subscription"),
		MQTTSubscribeFailures: f.counterVec("gatewayd_mqtt_subscribe_failures_total", "Subscriptions the broker refused (SUBACK 0x80) or that failed.", "subscription"),
		MQTTSubscribeRetries:  f.counter("gatewayd_mqtt_subscribe_retries_total", "Subscription requests (SUBSCRIBE or UNSUBSCRIBE) sent again on the same connection because no answer came in time."),
		MQTTPublishRefused:    f.counterVec("gatewayd_mqtt_publish_refused_total", "Readings the broker refused (MQTT 5 PUBACK reason code 0x80 or more, or larger than its maximum packet size) and that were dropped, by reason.", "reason"),
		MQTTLogSuppressed:     f.counter("gatewayd_mqtt_messages_log_suppressed_total", "Received messages not logged because more arrived than the log rate limit."),
		ReadingsTaken:         f.counter("gatewayd_readings_taken_total", "Readings put in the buffer to be published (after deadband)."),
		BufferDropped:         f.counter("gatewayd_buffer_dropped_total", "Readings dropped because the buffer was full (oldest first)."),
		BufferDiskErrors:      f.counter("gatewayd_buffer_disk_errors_total", "Failures of the disk buffer; after one the buffer is kept in memory."),
		BufferCorrupt:         f.counter("gatewayd_buffer_corrupt_total", "Disk buffers found unreadable at start and moved aside."),
		BufferDiskCommits:     f.counter("gatewayd_buffer_disk_commits_total", "Commits to the disk buffer (one write and one fdatasync each): readings unacknowledged for 1 s, seq leases, clean close."),
		ConfigReloadOK:        f.gauge("gatewayd_config_last_reload_successful", "1 when the last reload of the config (or the start) succeeded, 0 when it failed and the daemon kept the config it had."),
		ConfigReloadTime:      f.gauge("gatewayd_config_last_reload_success_timestamp_seconds", "Unix time of the last successful reload of the config (or of the start)."),
		HADiscoveryMessages:   f.counter("gatewayd_homeassistant_discovery_messages_total", "Home Assistant discovery messages (configs and clearings, not readings) sent to the broker."),
	}
	m.Sensors = &SensorSet{} // written by the /metrics handler, not registered
	bi := f.gaugeVec("gatewayd_build_info", "Always 1; the labels tell the version and the Go version.", "version", "goversion")
	bi.WithLabelValues(version, runtime.Version()).Set(1)
	return m
}

// WatchBuffer registers the buffer gauges, read from b at each scrape.
func (m *Metrics) WatchBuffer(b BufferStats) {
	f := factory{m.Registry}
	f.gaugeFunc("gatewayd_buffer_messages", "Readings waiting to be published.", func() float64 { return float64(b.Len()) })
	f.gaugeFunc("gatewayd_buffer_bytes", "Bytes the waiting readings take, as counted against buffer.max_bytes.", func() float64 { return float64(b.Bytes()) })
	f.gaugeFunc("gatewayd_buffer_oldest_age_seconds", "Age of the oldest waiting reading; 0 when none waits.", func() float64 {
		t, ok := b.Oldest()
		if !ok {
			return 0
		}
		return max(0, time.Since(t).Seconds())
	})
	f.gaugeFunc("gatewayd_buffer_durable", "1 while the buffer is kept on disk, 0 in memory.", func() float64 {
		if b.Durable() {
			return 1
		}
		return 0
	})
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeFunc(name, help string, fn func() float64) {
	f.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}
