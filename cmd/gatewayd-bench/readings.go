package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/internal/config"
)

// readings makes the baselines' messages: for sensors s0..sN-1, a
// temperature and a humidity reading per read, on the topic and in the JSON
// that gatewayd publishes for the same sensors (ROOT/RUN/SENSOR/QUANTITY,
// {"sensor":..,"quantity":..,"value":..,"unit":..,"time":..,"seq":..}), so
// that topic and payload sizes match byte for byte in length.
type readings struct {
	topics [][2]string
	heads  [][2]string // {"sensor":"s1","quantity":"temperature","value":
	seq    []uint64
	step   uint64
}

var quantities = [2]struct{ name, unit string }{{"temperature", "°C"}, {"humidity", "%"}}

func newReadings(root, run string, sensors int) *readings {
	r := &readings{topics: make([][2]string, sensors), heads: make([][2]string, sensors), seq: make([]uint64, sensors)}
	for i := range sensors {
		for q, qq := range quantities {
			name := "s" + strconv.Itoa(i)
			r.topics[i][q] = root + "/" + run + "/" + name + "/" + qq.name
			r.heads[i][q] = `{"sensor":"` + name + `","quantity":"` + qq.name + `","value":`
		}
	}
	return r
}

// read returns the two messages of one read of sensor i at t. Each payload
// is a new slice: paho does not copy it.
func (r *readings) read(i int, t time.Time, out *[2]message) {
	r.seq[i]++
	r.step++
	// Values of the same shape as the simulated sensor's: two decimals
	// around 21 °C and 45 %.
	w := math.Sin(float64(r.step%628) / 100)
	vals := [2]float64{math.Round((21+2.5*w)*100) / 100, math.Round((45-8*w)*100) / 100}
	for q, qq := range quantities {
		b := make([]byte, 0, len(r.heads[i][q])+96)
		b = append(b, r.heads[i][q]...)
		b = strconv.AppendFloat(b, vals[q], 'f', -1, 64)
		b = append(b, `,"unit":"`...)
		b = append(b, qq.unit...)
		b = append(b, `","time":"`...)
		b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z07:00")
		b = append(b, `","seq":`...)
		b = strconv.AppendUint(b, r.seq[i], 10)
		b = append(b, '}')
		out[q] = message{topic: r.topics[i][q], payload: b}
	}
}

type message struct {
	topic   string
	payload []byte
}

// gwConfig is the config of one gatewayd under test.
type gwConfig struct {
	run      string // gateway id: the second topic level
	root     string // the first topic level ("bench": seen by the subscriber)
	url      string
	metrics  string // metrics.listen
	sensors  int
	interval time.Duration
	qos      int
	window   int
	dir      string // buffer.dir; "" = memory
}

// yaml renders the config file: the daemon's defaults except the broker,
// the topic (under root/, so that the subscriber sees only readings), the
// QoS, max_inflight, the buffer dir, the sensors and the metrics address.
func (c gwConfig) yaml() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway: {id: %s}\nlog: {level: warn}\n", c.run)
	fmt.Fprintf(&b, "broker:\n  urls: [%q]\n  client_id: bench-%s\n", c.url, c.run)
	fmt.Fprintf(&b, "publish: {topic: \"%s/{gateway}/{sensor}/{quantity}\", qos: %d}\n", c.root, c.qos)
	fmt.Fprintf(&b, "buffer: {max_inflight: %d", c.window)
	if c.dir != "" {
		fmt.Fprintf(&b, ", dir: %q", c.dir)
	}
	fmt.Fprintf(&b, "}\nmetrics: {listen: %q}\nsensors:\n", c.metrics)
	for i := range c.sensors {
		fmt.Fprintf(&b, "  - {name: s%d, type: simulated, interval: %s}\n", i, c.interval)
	}
	return []byte(b.String())
}

// check parses the config as gatewayd will, so that a mistake here is
// reported as such and not as a child that died.
func (c gwConfig) check() error {
	_, err := config.Parse(c.run+".yaml", c.yaml(), func(string) (string, bool) { return "", false })
	return err
}
