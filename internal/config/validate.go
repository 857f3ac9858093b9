package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// validator checks every value, collecting all problems with the line of
// the key they concern. It touches nothing outside the config: Probe does.
type validator struct {
	file string
	line func(path string) int // where path is in the file
	has  func(path string) bool
	errs Errors
}

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, FieldError{File: v.file, Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) validate(c *Config) {
	v.validateGateway(c)
	v.validateBroker(&c.Broker)
	v.validatePublish(c)
	v.validateBuffer(&c.Buffer)
	v.validateSensors(c)
	v.validateSubscriptions(c.Subscriptions)
	v.listenAddr("metrics.listen", c.Metrics.Listen)
	v.validateHomeAssistant(c)
	if c.Broker.PasswordFile != "" && c.Broker.Password != "" {
		v.add("broker.password_file", "password and password_file are mutually exclusive; keep one")
	}
	if c.EmbeddedBroker.Enabled {
		v.listenAddr("embedded_broker.listen", c.EmbeddedBroker.Listen)
		v.validateEmbeddedBrokerAuth(&c.EmbeddedBroker)
	}
}

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

func (v *validator) validateGateway(c *Config) {
	if id := c.Gateway.ID; strings.ContainsAny(id, "+#/{}\x00") || !utf8.ValidString(id) || len(id) > 128 {
		v.add("gateway.id", "%.64q cannot be used in topics (no '+', '#', '/', '{', '}', at most 128 bytes)", id)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "must be debug, info, warn or error, not %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "must be text or json, not %q", c.Log.Format)
	}
}

var defaultPorts = map[string]string{
	"tcp": "1883", "mqtt": "1883",
	"ssl": "8883", "tls": "8883", "mqtts": "8883",
	"ws": "80", "wss": "443",
}

func (v *validator) validateBroker(b *Broker) {
	if len(b.URLs) == 0 {
		v.add("broker.urls", "at least one broker URL is needed")
	}
	for i, raw := range b.URLs {
		if b.UseEmbedded {
			break // the embedded broker's address, checked as embedded_broker.listen
		}
		p := fmt.Sprintf("broker.urls[%d]", i)
		u, err := url.Parse(raw)
		if err != nil {
			v.add(p, "invalid URL %q", raw)
			continue
		}
		port, known := defaultPorts[strings.ToLower(u.Scheme)]
		switch {
		case !known:
			v.add(p, "scheme of %q must be one of tcp, mqtt, ssl, tls, mqtts, ws, wss", raw)
			continue
		case u.Hostname() == "":
			v.add(p, "%q has no host", raw)
			continue
		case u.User != nil:
			v.add(p, "%q holds credentials; put them in broker.username and broker.password", u.Redacted())
			continue
		}
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), port)
		} else if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			v.add(p, "port of %q must be 1..65535", raw)
			continue
		}
		u.Scheme = strings.ToLower(u.Scheme)
		b.URLs[i] = u.String()
	}
	if b.ClientID == "" || len(b.ClientID) > 65535 || !utf8.ValidString(b.ClientID) {
		v.add("broker.client_id", "must be 1..65535 bytes of UTF-8")
	}
	if b.Keepalive.D() < time.Second || b.Keepalive.D() > 18*time.Hour {
		v.add("broker.keepalive", "must be between 1s and 18h, not %s", b.Keepalive)
	} else if b.Keepalive.D()%time.Second != 0 {
		v.add("broker.keepalive", "must be whole seconds (MQTT counts it in seconds), not %s", b.Keepalive)
	}
	if b.ConnectTimeout.D() <= 0 {
		v.add("broker.connect_timeout", "must be > 0, not %s", b.ConnectTimeout)
	}
	if b.ReconnectMaxInterval.D() < 100*time.Millisecond {
		v.add("broker.reconnect_max_interval", "must be at least 100ms, not %s", b.ReconnectMaxInterval)
	}
	v.validateTLS(&b.TLS)
	if b.Protocol != 4 && b.Protocol != 5 {
		v.add("broker.protocol", "must be 4 (MQTT 3.1.1) or 5 (MQTT 5), not %d", b.Protocol)
	}
	if b.SessionExpiry.D() < time.Second {
		v.add("broker.session_expiry", "must be at least 1s, not %s (for a session that ends with the connection, set clean_session: true)", b.SessionExpiry)
	} else {
		v.mqttSeconds("broker.session_expiry", b.SessionExpiry)
	}
	switch b.URLOrder {
	case "ordered", "random":
	default:
		v.add("broker.url_order", "must be ordered or random, not %q", b.URLOrder)
	}
	a := b.Availability
	if a.Topic != "" {
		v.topicName("broker.availability.topic", a.Topic, "")
		if a.Online == "" || a.Offline == "" {
			v.add("broker.availability", "online and offline must not be empty (set topic to \"\" to turn availability off)")
		}
	}
}

func (v *validator) validateTLS(t *TLS) {
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.add("broker.tls.key_file", "cert_file is set, so key_file is needed too")
	case t.CertFile == "" && t.KeyFile != "":
		v.add("broker.tls.cert_file", "key_file is set, so cert_file is needed too")
	}
}

func (v *validator) validatePublish(c *Config) {
	p := c.Publish
	v.topicTemplate("publish.topic", p.Topic, p.Format == "value", len(c.Sensors) > 1)
	switch p.Format {
	case "json", "value":
	default:
		v.add("publish.format", "must be json or value, not %q", p.Format)
	}
	v.qos("publish.qos", p.QoS)
	if p.MessageExpiry < 0 {
		v.add("publish.message_expiry", "must be 0 (none) or more, not %s", p.MessageExpiry)
	} else {
		v.mqttSeconds("publish.message_expiry", p.MessageExpiry)
	}
}

// mqttSeconds checks a duration that MQTT 5 sends as a four-byte count of
// seconds.
func (v *validator) mqttSeconds(path string, d Duration) {
	switch {
	case d.D()%time.Second != 0:
		v.add(path, "must be whole seconds (MQTT counts it in seconds), not %s", d)
	case d.D() > math.MaxUint32*time.Second:
		v.add(path, "must be at most %s, not %s", time.Duration(math.MaxUint32)*time.Second, d)
	}
}

func (v *validator) validateBuffer(b *Buffer) {
	if b.MaxMessages < 1 || b.MaxMessages > 100_000_000 {
		v.add("buffer.max_messages", "must be 1..100000000, not %d", b.MaxMessages)
	}
	if b.MaxBytes < 1024 {
		v.add("buffer.max_bytes", "must be at least 1KiB, not %s", b.MaxBytes)
	}
	if b.MaxInflight < 1 || b.MaxInflight > 65535 {
		v.add("buffer.max_inflight", "must be 1..65535, not %d", b.MaxInflight)
	}
}

func (v *validator) validateSensors(c *Config) {
	names := map[string]int{}
	for i := range c.Sensors {
		s := &c.Sensors[i]
		p := fmt.Sprintf("sensors[%d]", i)
		switch {
		case s.Name == "":
			v.add(p+".name", "is required")
		case !nameRE.MatchString(s.Name):
			v.add(p+".name", "%q must be 1..64 characters of a-z, 0-9, _ and -", s.Name)
		default:
			if j, dup := names[s.Name]; dup {
				v.add(p+".name", "%q is already the name of sensors[%d]", s.Name, j)
			}
			names[s.Name] = i
		}
		if s.Push() {
			v.validatePush(p, s)
		} else {
			if s.Interval.D() < 10*time.Millisecond {
				v.add(p+".interval", "must be at least 10ms, not %s", s.Interval)
			}
			if s.Timeout.D() <= 0 {
				v.add(p+".timeout", "must be > 0, not %s", s.Timeout)
			}
			if v.has(p + ".stale_after") {
				v.add(p+".stale_after", "applies to push sensors only (a polled sensor is down when its read fails)")
			}
		}
		if s.QoS != nil {
			v.qos(p+".qos", *s.QoS)
		}
		if s.Topic != "" {
			v.topicTemplate(p+".topic", s.Topic, c.Publish.Format == "value", false)
		}
		for key, m := range map[string]map[string]float64{"offset": s.Offset, "scale": s.Scale, "deadband": s.Deadband} {
			for q, x := range m {
				qp := p + "." + key + "." + q
				switch {
				case !sensors.ValidQuantity(q):
					v.add(qp, "%q is not a quantity name (a-z, 0-9, _)", q)
				case x != x || x > 1e300 || x < -1e300:
					v.add(qp, "must be a finite number")
				case key == "scale" && x == 0:
					v.add(qp, "must not be 0")
				case key == "deadband" && x < 0:
					v.add(qp, "must be >= 0, not %v", x)
				}
			}
		}
		if s.Heartbeat.D() < 0 {
			v.add(p+".heartbeat", "must be >= 0, not %s", s.Heartbeat)
		} else if s.Heartbeat.D() > 0 && len(s.Deadband) == 0 {
			v.add(p+".heartbeat", "only applies with a deadband; set deadband or remove heartbeat")
		}
		if s.Source != nil {
			v.sourceErrors(p, s.Source.Validate())
		}
	}
}

// validatePush checks the common keys as a push sensor reads them.
func (v *validator) validatePush(p string, s *Sensor) {
	if s.Interval.D() < 0 {
		v.add(p+".interval", "must be >= 0 (the least time between two published readings), not %s", s.Interval)
	}
	if v.has(p + ".timeout") {
		v.add(p+".timeout", "does not apply to a sensor of type %s, which is not polled (see stale_after)", s.Type)
	}
	if s.StaleAfter.D() < time.Second {
		v.add(p+".stale_after", "must be at least 1s, not %s", s.StaleAfter)
	}
}

// sourceErrors reports a source type's validation errors at their keys.
func (v *validator) sourceErrors(path string, err error) {
	if err == nil {
		return
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range joined.Unwrap() {
			v.sourceErrors(path, e)
		}
		return
	}
	var ke *sensors.KeyError
	if errors.As(err, &ke) {
		v.add(path+"."+ke.Key, "%s", ke.Msg)
		return
	}
	v.add(path, "%v", err)
}

func (v *validator) validateSubscriptions(subs []Subscription) {
	seen := map[string]int{}
	for i, s := range subs {
		p := fmt.Sprintf("subscriptions[%d]", i)
		if err := checkTopicFilter(s.Topic); err != nil {
			v.add(p+".topic", "%v", err)
		}
		if j, dup := seen[s.Topic]; dup {
			v.add(p+".topic", "%q is already subscriptions[%d]", s.Topic, j)
		}
		seen[s.Topic] = i
		v.qos(p+".qos", s.QoS)
	}
}

func (v *validator) qos(path string, q int) {
	if q < 0 || q > 2 {
		v.add(path, "must be 0, 1 or 2, not %d", q)
	}
}

var placeholderRE = regexp.MustCompile(`\{[^{}]*\}`)

// topicTemplate checks a publish topic with {gateway}, {sensor} and {quantity}.
func (v *validator) topicTemplate(path, tmpl string, needQuantity, needSensor bool) {
	for _, ph := range placeholderRE.FindAllString(tmpl, -1) {
		switch ph {
		case "{gateway}", "{sensor}", "{quantity}":
		default:
			v.add(path, "unknown placeholder %s (use {gateway}, {sensor}, {quantity})", ph)
			return
		}
	}
	if needQuantity && !strings.Contains(tmpl, "{quantity}") {
		v.add(path, "must contain {quantity} with format value, or temperature and humidity share one topic")
	}
	if needSensor && needQuantity && !strings.Contains(tmpl, "{sensor}") {
		v.add(path, "must contain {sensor} with format value and more than one sensor")
	}
	r := strings.NewReplacer("{gateway}", "g", "{sensor}", "s", "{quantity}", "q")
	v.topicName(path, r.Replace(tmpl), tmpl)
}

func (v *validator) topicName(path, topic, shown string) {
	if shown == "" {
		shown = topic
	}
	if err := checkTopicName(topic); err != nil {
		v.add(path, "%q: %v", shown, err)
	}
}

// checkTopicName checks an MQTT topic name (to publish to).
func checkTopicName(t string) error {
	switch {
	case t == "":
		return errors.New("topic is empty")
	case len(t) > 65535:
		return errors.New("topic is longer than 65535 bytes")
	case !utf8.ValidString(t):
		return errors.New("topic is not valid UTF-8")
	case strings.ContainsAny(t, "+#\x00"):
		return errors.New("a topic to publish to cannot contain '+', '#' or NUL")
	}
	return nil
}

// checkTopicFilter checks an MQTT topic filter (to subscribe to).
func checkTopicFilter(f string) error {
	switch {
	case f == "":
		return errors.New("topic filter is empty")
	case len(f) > 65535:
		return errors.New("topic filter is longer than 65535 bytes")
	case !utf8.ValidString(f) || strings.Contains(f, "\x00"):
		return errors.New("topic filter is not valid UTF-8")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("%q: '#' must be a whole level and the last one", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("%q: '+' must be a whole level", f)
		}
	}
	return nil
}

// listenAddr checks the form of a host:port to listen on; Probe checks that
// it can be listened on.
func (v *validator) listenAddr(path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(path, "%.64q is not host:port (e.g. 127.0.0.1:9108)", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(path, "port of %.64q must be 0..65535", addr)
	}
}

// haID is what Home Assistant accepts as a node_id and object_id of a
// discovery topic (TOPIC_MATCHER in its mqtt/discovery.py); it ignores a
// config on any other topic with only a warning in its log.
var haID = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// validateHomeAssistant checks homeassistant.*, and with discovery on what
// Home Assistant needs of the rest: ids it accepts in its discovery topics,
// and a state topic of its own for every quantity of every sensor.
func (v *validator) validateHomeAssistant(c *Config) {
	h := c.HomeAssistant
	switch {
	case h.Prefix == "":
		v.add("homeassistant.prefix", "must not be empty (Home Assistant's default is homeassistant)")
	case strings.HasPrefix(h.Prefix, "/") || strings.HasSuffix(h.Prefix, "/"):
		v.add("homeassistant.prefix", "%q must not begin or end with '/'", h.Prefix)
	default:
		v.topicName("homeassistant.prefix", h.Prefix, "")
	}
	if !h.Discovery {
		return
	}
	if id := c.Gateway.ID; !haID.MatchString(id) {
		v.add("gateway.id", "%.64q cannot be used with homeassistant.discovery: Home Assistant takes only a-z, A-Z, 0-9, _ and - in a discovery topic, and ignores others", id)
	}
	owner := map[string]int{} // resolved topic template -> sensor index
	for i := range c.Sensors {
		s := &c.Sensors[i]
		p := fmt.Sprintf("sensors[%d]", i)
		if s.Name != "" && !haID.MatchString(s.Name) {
			v.add(p+".name", "%q cannot be used with homeassistant.discovery: Home Assistant takes only a-z, A-Z, 0-9, _ and - in a discovery topic", s.Name)
		}
		key := "publish.topic"
		if s.Topic != "" {
			key = p + ".topic"
		}
		tmpl := s.Publish.Topic
		if !strings.Contains(tmpl, "{quantity}") {
			v.add(key, "must contain {quantity} with homeassistant.discovery: Home Assistant shows every message on a state topic as the value of that topic's one entity")
			continue
		}
		if j, dup := owner[tmpl]; dup {
			v.add(key, "sensors[%d] and sensors[%d] publish on the same topics (%s): with homeassistant.discovery each sensor needs topics of its own (add {sensor})", j, i, tmpl)
			continue
		}
		owner[tmpl] = i
	}
}
