package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testEnv = map[string]string{"GW_ID": "envbox", "GW_QOS": "2", "GW_PASS": "pa$$word"}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

func loadTestdata(t *testing.T, path string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(path, data, lookupTestEnv)
	if err != nil {
		return nil, err
	}
	return c, Probe(c)
}

// TestGoodFiles loads every testdata/*.good.yaml; each must be valid.
func TestGoodFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.good.yaml")
	if len(files) == 0 {
		t.Fatal("no good files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := loadTestdata(t, f); err != nil {
				t.Fatalf("unexpected error:\n%v", err)
			}
		})
	}
}

// TestBadFiles loads every testdata/*.bad.yaml; each names the errors it
// must produce in "# error: TEXT" lines at its top.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) < 30 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			var want []string
			for _, l := range strings.Split(string(data), "\n") {
				if s, ok := strings.CutPrefix(l, "# error: "); ok {
					want = append(want, s)
				}
			}
			if len(want) == 0 {
				t.Fatal("no '# error:' line")
			}
			_, err := loadTestdata(t, f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(want) {
				t.Errorf("%d errors, want %d:\n%v", got, len(want), err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), f+w) && !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
				if strings.HasPrefix(w, ":") && !strings.Contains(err.Error(), f+w) {
					t.Errorf("error does not start with the file and line %q:\n%v", f+w, err)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("empty.yaml", nil, lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	host := hostID()
	checks := []struct {
		name      string
		got, want any
	}{
		{"gateway.id", c.Gateway.ID, host},
		{"client_id", c.Broker.ClientID, "gatewayd-" + host},
		{"urls", strings.Join(c.Broker.URLs, ","), "tcp://127.0.0.1:1883"},
		{"clean_session", c.Broker.CleanSession, false},
		{"keepalive", c.Broker.Keepalive.D(), 30 * time.Second},
		{"reconnect_max_interval", c.Broker.ReconnectMaxInterval.D(), 30 * time.Second},
		{"protocol", c.Broker.Protocol, 4},
		{"session_expiry", c.Broker.SessionExpiry.D(), 168 * time.Hour},
		{"url_order", c.Broker.URLOrder, "ordered"},
		{"message_expiry", c.Publish.MessageExpiry.D(), time.Duration(0)},
		{"availability", c.Broker.Availability.Topic, "gatewayd/" + host + "/status"},
		{"publish.topic", c.Publish.Topic, "gatewayd/{gateway}/{sensor}/{quantity}"},
		{"publish.qos", c.Publish.QoS, 1},
		{"format", c.Publish.Format, "json"},
		{"max_messages", c.Buffer.MaxMessages, 100000},
		{"max_inflight", c.Buffer.MaxInflight, 100},
		{"sensors", len(c.Sensors), 1},
		{"sensor name", c.Sensors[0].Name, "simulated"},
		{"sensor interval", c.Sensors[0].Interval.D(), 10 * time.Second},
		{"sensor timeout", c.Sensors[0].Timeout.D(), 5 * time.Second},
		{"subscription", c.Subscriptions[0].Topic, "gatewayd/" + host + "/cmd/#"},
		{"metrics", c.Metrics.Listen, "127.0.0.1:9108"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestFullFile(t *testing.T) {
	c, err := loadTestdata(t, "testdata/full.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Broker.URLs[1]; got != "mqtt://localhost:1883" {
		t.Errorf("default port not added: %s", got)
	}
	if c.Broker.ClientID != "gw-box-1" || c.Broker.Availability.Topic != "site/box-1/status" {
		t.Errorf("{gateway} not filled: %q %q", c.Broker.ClientID, c.Broker.Availability.Topic)
	}
	s := c.Sensors[0]
	if s.Timeout.D() != 100*time.Millisecond || *s.QoS != 2 || s.Offset["temperature"] != -0.4 || s.Heartbeat.D() != 5*time.Minute {
		t.Errorf("sensor 0 decoded wrong: %+v", s)
	}
	if seed := s.Source.(interface{ Validate() error }); seed == nil {
		t.Error("no source config")
	}
	if c.Sensors[1].Timeout.D() != 5*time.Second || c.Sensors[1].Type != "simulated" {
		t.Errorf("sensor 1 defaults wrong: %+v", c.Sensors[1])
	}
	if c.Buffer.MaxBytes != 2<<20 {
		t.Errorf("max_bytes = %d", c.Buffer.MaxBytes)
	}
	if b := c.Broker; b.Protocol != 5 || b.SessionExpiry.D() != time.Hour || b.URLOrder != "random" || c.Publish.MessageExpiry.D() != 30*time.Second {
		t.Errorf("MQTT 5 keys: protocol %d session_expiry %s url_order %q message_expiry %s", b.Protocol, b.SessionExpiry, b.URLOrder, c.Publish.MessageExpiry)
	}
	if c.Broker.Password.String() != "[redacted]" || c.Broker.Password.Reveal() != "s3cret" {
		t.Error("password not kept secret")
	}
}

func TestEnvExpansion(t *testing.T) {
	c, err := loadTestdata(t, "testdata/env.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Gateway.ID != "envbox" || c.Publish.QoS != 2 || c.Broker.Password.Reveal() != "pa$$word" {
		t.Errorf("got id %q qos %d password %q", c.Gateway.ID, c.Publish.QoS, c.Broker.Password.Reveal())
	}
	if c.Broker.Availability.Online != "${GW_ID}" {
		t.Errorf("$${ not kept literal: %q", c.Broker.Availability.Online)
	}
	if c.Subscriptions[0].Topic != "$SYS/#" {
		t.Errorf("bare $ changed: %q", c.Subscriptions[0].Topic)
	}
}

func TestEmbeddedBrokerSetsURL(t *testing.T) {
	c, err := loadTestdata(t, "testdata/embedded.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Broker.URLs) != 1 || c.Broker.URLs[0] != "tcp://127.0.0.1:0" {
		t.Errorf("urls = %v", c.Broker.URLs)
	}
}

func TestNoSensors(t *testing.T) {
	c, err := loadTestdata(t, "testdata/nosensors.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sensors) != 0 {
		t.Errorf("sensors: [] gave %d sensors", len(c.Sensors))
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw1 := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw1, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse("x.yaml", []byte("broker:\n  password_file: "+pw1+"\nmetrics: {listen: '127.0.0.1:0'}\n"), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Broker.Password != "" {
		t.Error("password_file read at parse")
	}
	pw, err := c.Broker.ReadPassword()
	if err != nil || pw.Reveal() != "hunter2" {
		t.Errorf("password = %q, %v", pw.Reveal(), err)
	}
	// Rotated: the next read sees the new one.
	if err := os.WriteFile(pw1, []byte("correct horse\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := c.Broker.ReadPassword(); err != nil || pw.Reveal() != "correct horse" {
		t.Errorf("rotated password = %q, %v", pw.Reveal(), err)
	}
	os.WriteFile(pw1, nil, 0o600)
	if _, err := c.Broker.ReadPassword(); err == nil || !strings.Contains(err.Error(), "broker.password_file: "+pw1+" is empty") {
		t.Errorf("empty file: %v", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/gateway.yaml")
	if err == nil || !strings.Contains(err.Error(), "reading config file /nonexistent/gateway.yaml") {
		t.Fatalf("err = %v", err)
	}
}

func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	b.WriteString("broker:\n  urls: *a8\n")
	_, err := Parse("bomb.yaml", []byte(b.String()), lookupTestEnv)
	if err == nil {
		t.Fatal("alias bomb accepted")
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "1KiB": 1024, "64MiB": 64 << 20, "1.5GB": 1.5e9, "10 MB": 10e6, "512B": 512} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1", "1TB", "NaN"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
}

// TestNoDerivedErrors: a bad interval is reported once, not again through
// the timeout derived from it.
func TestNoDerivedErrors(t *testing.T) {
	_, err := Parse("x.yaml", []byte("sensors:\n  - name: a\n    type: simulated\n    interval: -5s\n"), lookupTestEnv)
	if err == nil || strings.Contains(err.Error(), "timeout") || strings.Count(err.Error(), "\n") != 0 {
		t.Fatalf("want one error about the interval, got:\n%v", err)
	}
}
