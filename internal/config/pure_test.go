package config

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// uint8Config is a source type's config with a uint8 key, which the old
// hand-written decoder could not decode.
type uint8Config struct {
	Address uint8 `yaml:"address"`
}

func (c *uint8Config) Validate() error                         { return nil }
func (c *uint8Config) New(sensors.Env) (sensors.Source, error) { return nil, nil }

func init() { sensors.Register("test-uint8", func() sensors.Config { return &uint8Config{} }) }

func TestUint8Key(t *testing.T) {
	c, err := loadTestdata(t, "testdata/uint8.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Sensors[0].Source.(*uint8Config).Address; got != 255 {
		t.Errorf("address = %d", got)
	}
}

// TestParseIsPure: Parse reads no file, listens nowhere and looks no host
// up, so it accepts what only Probe can refuse, and Probe refuses it with
// the same file:line: key: form.
func TestParseIsPure(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "a-file")
	os.WriteFile(file, []byte("x"), 0o600)
	yaml := `broker:
  password_file: /nonexistent/pw
  tls:
    ca_file: /nonexistent/ca.pem
    cert_file: /nonexistent/cert.pem
    key_file: /nonexistent/key.pem
buffer:
  dir: ` + file + `
metrics:
  listen: "192.0.2.1:9108"
embedded_broker:
  enabled: true
  listen: "no-such-host.invalid:1883"
`
	c, err := Parse("pure.yaml", []byte(yaml), lookupTestEnv)
	if err != nil {
		t.Fatalf("Parse touched the system: %v", err)
	}
	err = Probe(c)
	if err == nil {
		t.Fatal("Probe found nothing")
	}
	for _, want := range []string{
		"pure.yaml:2: broker.password_file: cannot read: /nonexistent/pw: no such file or directory",
		"pure.yaml:4: broker.tls.ca_file: cannot read: /nonexistent/ca.pem",
		"pure.yaml:5: broker.tls.cert_file: cannot load the client certificate",
		"pure.yaml:8: buffer.dir: " + file + " exists and is not a directory",
		"pure.yaml:10: metrics.listen: cannot listen on 192.0.2.1:9108",
		`pure.yaml:13: embedded_broker.listen: cannot resolve host "no-such-host.invalid"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Probe error lacks %q:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 6 {
		t.Errorf("%d errors, want 6:\n%v", n, err)
	}
}

// TestProbeAcceptsOwnPort: the running daemon's own metrics port is taken;
// checking its file must not fail on that.
func TestProbeAcceptsOwnPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := Parse("x.yaml", []byte("metrics: {listen: '"+l.Addr().String()+"'}\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	if err := Probe(c); err != nil {
		t.Fatalf("Probe refused a port in use: %v", err)
	}
}

// TestEnvCannotInjectYAML: an expanded value is one scalar, whatever it holds.
func TestEnvCannotInjectYAML(t *testing.T) {
	env := func(name string) (string, bool) {
		return map[string]string{"INJ": "x\nlog: {level: debug}", "LIST": "[1, 2]", "QOS": "0"}[name], true
	}
	c, err := Parse("x.yaml", []byte("broker:\n  client_id: ${INJ}\n  username: ${LIST}\npublish:\n  qos: ${QOS}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.ClientID != "x\nlog: {level: debug}" || c.Log.Level != "info" || c.Broker.Username != "[1, 2]" {
		t.Errorf("client_id %q, level %q, username %q", c.Broker.ClientID, c.Log.Level, c.Broker.Username)
	}
	if c.Publish.QoS != 0 {
		t.Errorf("a plain ${QOS} did not read as a number: %d", c.Publish.QoS)
	}
}

// TestResolved: the daemon reads each sensor's publish settings resolved.
func TestResolved(t *testing.T) {
	c, err := Parse("x.yaml", []byte(`gateway: {id: gw}
publish: {qos: 0, retain: true, format: value, topic: "a/{gateway}/{sensor}/{quantity}"}
sensors:
  - {name: one, type: simulated}
  - {name: two, type: simulated, qos: 2, retain: false, topic: "b/{sensor}/{gateway}/{quantity}"}
`), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := []SensorPublish{
		{Topic: "a/gw/one/{quantity}", Format: "value", QoS: 0, Retain: true},
		{Topic: "b/two/gw/{quantity}", Format: "value", QoS: 2, Retain: false},
	}
	for i, w := range want {
		if got := c.Sensors[i].Publish; got != w {
			t.Errorf("sensor %d: %+v, want %+v", i, got, w)
		}
	}
}

// pushConfig is a push type's config (sensors.PushConfig).
type pushConfig struct {
	Device string `yaml:"device"`
}

func (c *pushConfig) Validate() error                         { return nil }
func (c *pushConfig) New(sensors.Env) (sensors.Source, error) { return nil, nil }
func (c *pushConfig) Pushes()                                 {}

func init() { sensors.Register("test-push", func() sensors.Config { return &pushConfig{} }) }

func TestPushSensorKeys(t *testing.T) {
	c, err := Parse("x.yaml", []byte("sensors:\n  - {name: a, type: test-push, device: x}\n  - {name: b, type: test-push, interval: 1m, stale_after: 2h}\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Sensors[0], c.Sensors[1]
	if !a.Push() || a.Interval != 0 || a.Timeout != 0 || a.StaleAfter.D() != DefaultStaleAfter {
		t.Errorf("push defaults: %+v", a)
	}
	if b.Interval.D() != time.Minute || b.StaleAfter.D() != 2*time.Hour {
		t.Errorf("push keys: %+v", b)
	}
	_, err = Parse("x.yaml", []byte(`sensors:
  - {name: a, type: test-push, timeout: 1s, stale_after: 0s, interval: -1s}
  - {name: b, type: simulated, stale_after: 1m}
`), lookupTestEnv)
	for _, want := range []string{
		"x.yaml:2: sensors[0].interval: must be >= 0",
		"x.yaml:2: sensors[0].timeout: does not apply to a sensor of type test-push",
		"x.yaml:2: sensors[0].stale_after: must be at least 1s",
		"x.yaml:3: sensors[1].stale_after: applies to push sensors only",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestProbeFindsExecProgram: an exec sensor's program is looked up in PATH
// by Probe, not by Parse, and the error names the file, the line and the key.
func TestProbeFindsExecProgram(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	data := []byte("sensors:\n  - name: script\n    type: exec\n    command: [no-such-read-sensor]\n")
	c, err := Parse("x.yaml", data, lookupTestEnv)
	if err != nil {
		t.Fatalf("Parse touched PATH: %v", err)
	}
	err = Probe(c)
	if err == nil || !strings.Contains(err.Error(), `x.yaml:4: sensors[0].command: "no-such-read-sensor" not found in PATH`) {
		t.Fatalf("Probe: %v", err)
	}
}
