package gateway

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// Payload formats (publish.format).
const (
	FormatJSON  = "json"
	FormatValue = "value"
)

// series is one sensor's one quantity: its topic, its names, its sequence
// counter and its deadband state. Rendering a reading costs one allocation,
// the payload; the series keeps no more than it must, since thousands of
// sensors mean tens of thousands of series.
type series struct {
	topic  string
	seqKey string // "sensor/quantity": also where render finds both names
	split  int    // index of the '/' in seqKey
	unit   string
	seq    uint64

	offset, scale float64
	deadband      float64 // < 0: none
	published     bool
	lastValue     float64
	lastTime      time.Time
}

// quantity is the series' quantity name.
func (s *series) quantity() string { return s.seqKey[s.split+1:] }

// renderTopic fills {quantity} into a sensor's resolved topic template.
func renderTopic(tmpl, quantity string) string {
	return strings.ReplaceAll(tmpl, "{quantity}", quantity)
}

func newSeries(topic, sensor, quantity string) *series {
	return &series{
		topic:    topic,
		seqKey:   sensor + "/" + quantity,
		split:    len(sensor),
		unit:     sensors.Unit(quantity),
		scale:    1,
		deadband: -1,
	}
}

// timeLayout is RFC 3339 in UTC with milliseconds, as in the spec's example.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// render builds the payload of one reading with sequence number seq.
func (s *series) render(format string, v float64, t time.Time, seq uint64) []byte {
	if format == FormatValue {
		return appendValue(make([]byte, 0, 24), v)
	}
	b := make([]byte, 0, len(s.seqKey)+len(s.unit)+112)
	b = append(b, `{"sensor":"`...)
	b = append(b, s.seqKey[:s.split]...)
	b = append(b, `","quantity":"`...)
	b = append(b, s.quantity()...)
	b = append(b, `","value":`...)
	b = appendValue(b, v)
	b = append(b, `,"unit":"`...)
	b = append(b, s.unit...)
	b = append(b, `","time":"`...)
	b = appendTime(b, t)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

// appendTime writes t as timeLayout does, without interpreting the layout
// for every reading (that cost 5 % of the daemon's CPU at 4,000 readings/s).
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, second := t.Clock()
	b = append4(b, year)
	b = append(b, '-')
	b = append2(b, int(month))
	b = append(b, '-')
	b = append2(b, day)
	b = append(b, 'T')
	b = append2(b, hour)
	b = append(b, ':')
	b = append2(b, minute)
	b = append(b, ':')
	b = append2(b, second)
	ms := t.Nanosecond() / 1e6
	return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

func append2(b []byte, n int) []byte { return append(b, byte('0'+n/10), byte('0'+n%10)) }

func append4(b []byte, n int) []byte {
	return append(b, byte('0'+n/1000), byte('0'+n/100%10), byte('0'+n/10%10), byte('0'+n%10))
}

// appendValue writes v in the shortest form that reads back the same.
func appendValue(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// calibrate applies scale, then offset, and rounds to 1/1000 of the unit so
// that float arithmetic does not publish 21.960000000000001.
func (s *series) calibrate(raw float64) float64 {
	v := raw*s.scale + s.offset
	if math.Abs(v) < 1e12 {
		v = math.Round(v*1000) / 1000
	}
	return v
}

// due reports whether a value must be published under the deadband rule: the
// first value, a move by more than the deadband, or heartbeat elapsed since
// the last publish.
func (s *series) due(v float64, t time.Time, heartbeat time.Duration) bool {
	if s.deadband < 0 || !s.published {
		return true
	}
	if math.Abs(v-s.lastValue) > s.deadband {
		return true
	}
	return heartbeat > 0 && t.Sub(s.lastTime) >= heartbeat
}
