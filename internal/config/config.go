// Package config loads gatewayd's YAML configuration: strictly (an unknown key
// is an error), with a default for every key, ${VAR} expansion, and validation
// whose errors name the file, the line and the key.
package config

import (
	"os"
	"strings"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// Config is the whole configuration. Parse returns it with defaults applied,
// every value validated and the derived values resolved: {gateway} filled in,
// and each sensor's publish settings in Sensor.Publish. The daemon reads it
// as it is; no other package derives a default again.
//
// A new key is a field here (with its yaml tag and its default in Default)
// plus its check in validate.go: decoding, unknown-key errors with
// suggestions, and line numbers come from the field alone.
type Config struct {
	Gateway        Gateway        `yaml:"gateway"`
	Log            Log            `yaml:"log"`
	Broker         Broker         `yaml:"broker"`
	EmbeddedBroker EmbeddedBroker `yaml:"embedded_broker"`
	Publish        Publish        `yaml:"publish"`
	Buffer         Buffer         `yaml:"buffer"`
	Sensors        []Sensor       `yaml:"sensors"`
	Subscriptions  []Subscription `yaml:"subscriptions"`
	Metrics        Metrics        `yaml:"metrics"`
	HomeAssistant  HomeAssistant  `yaml:"homeassistant"`

	// File is the path the config was loaded from ("" for defaults).
	File string `yaml:"-"`

	probeLines map[string]place // the lines of the keys Probe checks, for its errors
}

// Gateway identifies this box.
type Gateway struct {
	ID string `yaml:"id"` // default: the host name, made topic-safe
}

// Log chooses the log level and format.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Broker is the MQTT session.
type Broker struct {
	URLs                 []string     `yaml:"urls"`
	ClientID             string       `yaml:"client_id"`
	CleanSession         bool         `yaml:"clean_session"`
	Keepalive            Duration     `yaml:"keepalive"`
	ConnectTimeout       Duration     `yaml:"connect_timeout"`
	ReconnectMaxInterval Duration     `yaml:"reconnect_max_interval"`
	Username             string       `yaml:"username"`
	Password             Secret       `yaml:"password"`
	PasswordFile         string       `yaml:"password_file"` // read at each connect: ReadPassword
	TLS                  TLS          `yaml:"tls"`
	Availability         Availability `yaml:"availability"`
	// Protocol is the MQTT protocol level: 4 (3.1.1) or 5.
	Protocol int `yaml:"protocol"`
	// SessionExpiry (MQTT 5) is how long the broker keeps the session
	// while gatewayd is away.
	SessionExpiry Duration `yaml:"session_expiry"`
	// URLOrder is the failover order of URLs: ordered | random (shuffled
	// with a seed of gateway.id).
	URLOrder string `yaml:"url_order"`

	// UseEmbedded is true when broker.urls was not given and the embedded
	// broker is on: the daemon then connects to the embedded broker's
	// actual address (which may have been given as port 0).
	UseEmbedded bool `yaml:"-"`
}

// TLS configures ssl://, tls://, mqtts:// and wss:// connections.
type TLS struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// Availability is the retained online/offline status topic. An empty topic
// turns it off.
type Availability struct {
	Topic   string `yaml:"topic"`
	Online  string `yaml:"online"`
	Offline string `yaml:"offline"`
}

// EmbeddedBroker runs an MQTT broker inside the daemon.
type EmbeddedBroker struct {
	Enabled bool   `yaml:"enabled"`
	Listen  string `yaml:"listen"`
	// Username and PasswordFile are the one user the broker accepts; they
	// are required to listen beyond loopback (operator.go).
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
}

// Publish is how readings are published.
type Publish struct {
	Topic  string `yaml:"topic"`
	Format string `yaml:"format"` // json | value
	QoS    int    `yaml:"qos"`
	Retain bool   `yaml:"retain"`
	// MessageExpiry (MQTT 5): a reading not delivered within this is
	// discarded by the broker; 0: never.
	MessageExpiry Duration `yaml:"message_expiry"`
}

// Buffer is where readings wait for the broker.
type Buffer struct {
	MaxMessages int      `yaml:"max_messages"`
	MaxBytes    ByteSize `yaml:"max_bytes"`
	Dir         string   `yaml:"dir"`
	MaxInflight int      `yaml:"max_inflight"`
}

// Sensor is one configured sensor: the keys common to every type, the type's
// own keys in Source, and the resolved publish settings in Publish. Its entry
// is decoded by UnmarshalYAML (decode.go).
type Sensor struct {
	Name      string             `yaml:"name"`
	Type      string             `yaml:"type"`
	Interval  Duration           `yaml:"interval"`
	Timeout   Duration           `yaml:"timeout"`
	QoS       *int               `yaml:"qos"`
	Retain    *bool              `yaml:"retain"`
	Topic     string             `yaml:"topic"`
	Offset    map[string]float64 `yaml:"offset"`
	Scale     map[string]float64 `yaml:"scale"`
	Deadband  map[string]float64 `yaml:"deadband"`
	Heartbeat Duration           `yaml:"heartbeat"`
	// StaleAfter (push sensors only): the sensor is down when nothing was
	// heard for this long.
	StaleAfter Duration `yaml:"stale_after"`

	// Source holds the type's own keys (seed, device, command, ...).
	Source sensors.Config `yaml:"-"`
	// Publish is where and how the sensor's readings are published:
	// publish.* with the sensor's own qos, retain and topic applied.
	Publish SensorPublish `yaml:"-"`
}

// SensorPublish is one sensor's resolved publish settings.
type SensorPublish struct {
	// Topic is the topic template with {gateway} and {sensor} filled in;
	// {quantity} is left for each reading.
	Topic  string
	Format string // json | value
	QoS    byte
	Retain bool
}

// Subscription is one topic filter whose messages are logged.
type Subscription struct {
	Topic string `yaml:"topic"`
	QoS   int    `yaml:"qos"`
}

// Metrics is the HTTP endpoint.
type Metrics struct {
	Listen string `yaml:"listen"`
	// WebConfigFile is TLS and basic auth for every endpoint, in the web
	// config format of Prometheus' exporter-toolkit ("": plain HTTP, open).
	WebConfigFile string `yaml:"web_config_file"`
}

// HomeAssistant is Home Assistant's MQTT discovery (internal/homeassistant).
type HomeAssistant struct {
	// Discovery announces every sensor to Home Assistant (and to the other
	// consumers of its convention).
	Discovery bool `yaml:"discovery"`
	// Prefix is the discovery prefix; Home Assistant's birth topic is
	// {prefix}/status.
	Prefix string `yaml:"prefix"`
}

// Default returns the configuration of an empty file.
func Default() *Config {
	return &Config{
		Log: Log{Level: "info", Format: "text"},
		Broker: Broker{
			URLs:                 []string{"tcp://127.0.0.1:1883"},
			Keepalive:            Duration(30 * time.Second),
			ConnectTimeout:       Duration(10 * time.Second),
			ReconnectMaxInterval: Duration(30 * time.Second),
			Protocol:             4,
			SessionExpiry:        Duration(168 * time.Hour),
			URLOrder:             "ordered",
			Availability: Availability{
				Topic:   "gatewayd/{gateway}/status",
				Online:  "online",
				Offline: "offline",
			},
		},
		EmbeddedBroker: EmbeddedBroker{Listen: "127.0.0.1:1883"},
		Publish: Publish{
			Topic:  "gatewayd/{gateway}/{sensor}/{quantity}",
			Format: "json",
			QoS:    1,
		},
		Buffer: Buffer{
			MaxMessages: 100000,
			MaxBytes:    64 << 20,
			MaxInflight: 100,
		},
		Subscriptions: []Subscription{{Topic: "gatewayd/{gateway}/cmd/#", QoS: 1}},
		Metrics:       Metrics{Listen: "127.0.0.1:9108"},
		HomeAssistant: HomeAssistant{Prefix: "homeassistant"},
	}
}

// defaultSensors is used when the file has no sensors key at all.
func defaultSensors() []Sensor {
	src, _ := sensors.NewConfig("simulated")
	return []Sensor{{Name: "simulated", Type: "simulated", Source: src}}
}

// Default per-sensor values. A push sensor's interval defaults to 0: every
// transmission is published.
const (
	DefaultInterval    = 10 * time.Second
	DefaultReadTimeout = 5 * time.Second
	DefaultStaleAfter  = 15 * time.Minute
)

// Push reports whether the sensor's type delivers its readings itself
// (sensors.Pusher) rather than being read on its interval.
func (s *Sensor) Push() bool {
	_, ok := s.Source.(sensors.PushConfig)
	return ok
}

// hostID turns the host name into a gateway id: lower case, and every byte
// that is not [a-z0-9_-] replaced by '-', so that it is safe in topics.
func hostID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gateway"
	}
	h = strings.ToLower(h)
	b := []byte(h)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}
