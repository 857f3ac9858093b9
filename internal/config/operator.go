package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/prometheus/exporter-toolkit/web"
)

// The keys that keep the daemon's endpoints from being open to anyone:
// embedded_broker.username/password_file and metrics.web_config_file.

// validateEmbeddedBrokerAuth refuses an embedded broker that would accept
// anyone on an address beyond loopback: an open relay for the network. A
// host name is looked up by Probe (probeOperator).
func (v *validator) validateEmbeddedBrokerAuth(e *EmbeddedBroker) {
	switch {
	case e.Username != "" && e.PasswordFile == "":
		v.add("embedded_broker.username", "needs embedded_broker.password_file (the user's password)")
	case e.Username == "" && e.PasswordFile != "":
		v.add("embedded_broker.password_file", "needs embedded_broker.username")
	case e.Username == "" && beyondLoopback(e.Listen, nil):
		v.openBroker(e.Listen)
	}
}

func (v *validator) openBroker(listen string) {
	v.add("embedded_broker.listen", "%.64q is reachable beyond this machine, and without embedded_broker.username and "+
		"embedded_broker.password_file the embedded broker lets anyone in: set both, or listen on 127.0.0.1", listen)
}

// beyondLoopback reports whether a listen address accepts connections from
// other machines: an empty host (every interface), an IP that is not a
// loopback one, or, with lookup, a name with such an address. Without
// lookup a name other than localhost is not judged.
func beyondLoopback(addr string, lookup func(string) ([]string, error)) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "localhost" {
		return false // a bad address is listenAddr's error
	}
	if host == "" {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return !ip.IsLoopback()
	}
	if lookup == nil {
		return false
	}
	ips, err := lookup(host)
	if err != nil {
		return false // probeListen reports it
	}
	for _, s := range ips {
		if ip, err := netip.ParseAddr(s); err != nil || !ip.IsLoopback() {
			return true
		}
	}
	return false
}

// isHostName reports whether addr's host is a name (not localhost, not an
// IP, not empty).
func isHostName(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "localhost" {
		return false
	}
	_, err = netip.ParseAddr(host)
	return err != nil
}

// ReadPassword reads embedded_broker.password_file.
func (e EmbeddedBroker) ReadPassword() (Secret, error) {
	if e.PasswordFile == "" {
		return "", nil
	}
	pw, err := readPasswordFile(e.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("embedded_broker.password_file: %w", err)
	}
	return pw, nil
}

// probeOperator reads the embedded broker's password file and checks the
// web config file as exporter-toolkit will read it.
func (v *validator) probeOperator(c *Config) {
	if e := c.EmbeddedBroker; e.Enabled && e.PasswordFile != "" {
		if _, err := readPasswordFile(e.PasswordFile); err != nil {
			v.add("embedded_broker.password_file", "%v", err)
		}
	} else if e.Enabled && e.Username == "" && isHostName(e.Listen) && beyondLoopback(e.Listen, net.LookupHost) {
		v.openBroker(e.Listen) // Parse judged addresses, Probe judges names
	}
	if f := c.Metrics.WebConfigFile; f != "" {
		var pe *os.PathError
		if err := web.Validate(f); errors.As(err, &pe) {
			v.add("metrics.web_config_file", "cannot read: %v", unwrapPath(err))
		} else if err != nil {
			v.add("metrics.web_config_file", "%s: %v", f, err)
		}
	}
}
