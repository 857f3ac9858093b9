package config

import (
	"strings"
	"testing"
)

// TestEmbeddedBrokerBeyondLoopback: an open embedded broker is refused on
// every address that others can reach, and accepted there with a user.
func TestEmbeddedBrokerBeyondLoopback(t *testing.T) {
	for listen, open := range map[string]bool{
		"127.0.0.1:1883": true, "[::1]:1883": true, "localhost:1883": true, "127.0.1.1:1883": true,
		"0.0.0.0:1883": false, ":1883": false, "[::]:1883": false, "192.168.1.10:1883": false, "[fd00::1]:1883": false,
	} {
		yaml := "embedded_broker: {enabled: true, listen: \"" + listen + "\"}\n"
		_, err := Parse("x.yaml", []byte(yaml), lookupTestEnv)
		if open && err != nil {
			t.Errorf("%s without a user: %v", listen, err)
		}
		if !open && (err == nil || !strings.Contains(err.Error(), "x.yaml:1: embedded_broker.listen: ") ||
			!strings.Contains(err.Error(), "embedded_broker.username")) {
			t.Errorf("%s without a user: %v", listen, err)
		}
		yaml = "embedded_broker: {enabled: true, listen: \"" + listen + "\", username: gw, password_file: testdata/embedded-password}\n"
		if _, err := Parse("x.yaml", []byte(yaml), lookupTestEnv); err != nil {
			t.Errorf("%s with a user: %v", listen, err)
		}
	}
	// Off, it listens nowhere: nothing to refuse.
	if _, err := Parse("x.yaml", []byte("embedded_broker: {listen: \"0.0.0.0:1883\"}\n"), lookupTestEnv); err != nil {
		t.Errorf("disabled: %v", err)
	}
}

func TestEmbeddedBrokerPassword(t *testing.T) {
	c, err := loadTestdata(t, "testdata/embedded-auth.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pw, err := c.EmbeddedBroker.ReadPassword()
	if err != nil || pw.Reveal() != "gw-secret" || c.EmbeddedBroker.Username != "gw" || c.Metrics.WebConfigFile != "testdata/web.yml" {
		t.Errorf("%+v %+v %q %v", c.EmbeddedBroker, c.Metrics, pw.Reveal(), err)
	}
	if s := pw.String(); strings.Contains(s, "gw-secret") {
		t.Errorf("the password shows in %q", s)
	}
}
