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

// series is one sensor's one quantity: its topic, the fixed parts of its
// payload, its sequence counter and its deadband state. Everything that does
// not change between readings is computed once, so that rendering a reading
// costs one allocation: the payload.
type series struct {
	topic  string
	seqKey string
	prefix string // {"sensor":"x","quantity":"q","value":
	middle string // ,"unit":"°C","time":"
	seq    uint64

	offset, scale float64
	deadband      float64 // < 0: none
	published     bool
	lastValue     float64
	lastTime      time.Time
}

// renderTopic fills {gateway}, {sensor} and {quantity} into a topic template.
func renderTopic(tmpl, gateway, sensor, quantity string) string {
	return strings.NewReplacer("{gateway}", gateway, "{sensor}", sensor, "{quantity}", quantity).Replace(tmpl)
}

func newSeries(topic, sensor, quantity string) *series {
	return &series{
		topic:    topic,
		seqKey:   sensor + "/" + quantity,
		prefix:   `{"sensor":"` + sensor + `","quantity":"` + quantity + `","value":`,
		middle:   `,"unit":"` + sensors.Unit(quantity) + `","time":"`,
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
	b := make([]byte, 0, len(s.prefix)+len(s.middle)+64)
	b = append(b, s.prefix...)
	b = appendValue(b, v)
	b = append(b, s.middle...)
	b = t.UTC().AppendFormat(b, timeLayout)
	b = append(b, `","seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
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
