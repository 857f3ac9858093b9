package metrics

import (
	"math"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// SensorSet holds the per-sensor metrics as plain atomic counters that the
// poller updates, and exports them at scrape time, as node_exporter's
// collectors do. client_golang's metric vectors cost about 4 KB per child;
// with ten children per sensor, 10,000 sensors took 40 MB of heap that
// these counters hold in under 2 MB.
type SensorSet struct {
	mu      sync.RWMutex
	sensors []*SensorStats
}

// SensorStats are one sensor's counters.
type SensorStats struct {
	name        string
	Reads       atomic.Uint64
	ReadErrors  atomic.Uint64
	up          atomic.Bool
	lastSuccess atomic.Int64 // Unix nanoseconds; 0: never

	mu     sync.Mutex
	series []*SeriesStats
}

// SeriesStats are the counters of one quantity of one sensor.
type SeriesStats struct {
	quantity   string
	value      atomic.Uint64 // math.Float64bits
	hasValue   atomic.Bool
	Rejected   atomic.Uint64
	Suppressed atomic.Uint64
}

var (
	descReads      = prometheus.NewDesc("gatewayd_sensor_reads_total", "Successful sensor reads.", []string{"sensor"}, nil)
	descReadErrors = prometheus.NewDesc("gatewayd_sensor_read_errors_total", "Failed sensor reads (errors and timeouts).", []string{"sensor"}, nil)
	descUp         = prometheus.NewDesc("gatewayd_sensor_up", "1 when the sensor's last read succeeded, else 0.", []string{"sensor"}, nil)
	descLastOK     = prometheus.NewDesc("gatewayd_sensor_last_success_timestamp_seconds", "Unix time of the sensor's last successful read.", []string{"sensor"}, nil)
	descValue      = prometheus.NewDesc("gatewayd_sensor_value", "The last value read, after calibration.", []string{"sensor", "quantity"}, nil)
	descRejected   = prometheus.NewDesc("gatewayd_sensor_values_rejected_total",
		"Values rejected as outside the quantity's physical range (or not a number).", []string{"sensor", "quantity"}, nil)
	descSuppressed = prometheus.NewDesc("gatewayd_sensor_values_suppressed_total",
		"Values not published because they stayed within the deadband.", []string{"sensor", "quantity"}, nil)
)

// Sensor adds a sensor and returns its counters.
func (s *SensorSet) Sensor(name string) *SensorStats {
	st := &SensorStats{name: name}
	s.mu.Lock()
	s.sensors = append(s.sensors, st)
	s.mu.Unlock()
	return st
}

// Series adds a quantity to the sensor and returns its counters.
func (st *SensorStats) Series(quantity string) *SeriesStats {
	se := &SeriesStats{quantity: quantity}
	st.mu.Lock()
	st.series = append(st.series, se)
	st.mu.Unlock()
	return se
}

// Succeeded records a successful read at unixNano.
func (st *SensorStats) Succeeded(unixNano int64) {
	st.Reads.Add(1)
	st.up.Store(true)
	st.lastSuccess.Store(unixNano)
}

// Failed records a failed read.
func (st *SensorStats) Failed() {
	st.ReadErrors.Add(1)
	st.up.Store(false)
}

// Up reports whether the last read succeeded.
func (st *SensorStats) Up() bool { return st.up.Load() }

// LastSuccess is the Unix time in nanoseconds of the last successful read.
func (st *SensorStats) LastSuccess() int64 { return st.lastSuccess.Load() }

// SetValue records the last value read.
func (se *SeriesStats) SetValue(v float64) {
	se.value.Store(math.Float64bits(v))
	se.hasValue.Store(true)
}

// Value is the last value read, and whether there was one.
func (se *SeriesStats) Value() (float64, bool) {
	return math.Float64frombits(se.value.Load()), se.hasValue.Load()
}

// Describe implements prometheus.Collector.
func (s *SensorSet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReads, descReadErrors, descUp, descLastOK, descValue, descRejected, descSuppressed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *SensorSet) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	sensors := s.sensors
	s.mu.RUnlock()
	for _, st := range sensors {
		up := 0.0
		if st.up.Load() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descReads, prometheus.CounterValue, float64(st.Reads.Load()), st.name)
		ch <- prometheus.MustNewConstMetric(descReadErrors, prometheus.CounterValue, float64(st.ReadErrors.Load()), st.name)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, st.name)
		ch <- prometheus.MustNewConstMetric(descLastOK, prometheus.GaugeValue, float64(st.lastSuccess.Load())/1e9, st.name)
		st.mu.Lock()
		series := st.series
		st.mu.Unlock()
		for _, se := range series {
			if v, ok := se.Value(); ok {
				ch <- prometheus.MustNewConstMetric(descValue, prometheus.GaugeValue, v, st.name, se.quantity)
			}
			ch <- prometheus.MustNewConstMetric(descRejected, prometheus.CounterValue, float64(se.Rejected.Load()), st.name, se.quantity)
			ch <- prometheus.MustNewConstMetric(descSuppressed, prometheus.CounterValue, float64(se.Suppressed.Load()), st.name, se.quantity)
		}
	}
}
