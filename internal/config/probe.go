package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/gatewayd/gatewayd/internal/sensors"
)

// Probe checks a parsed config against the system, with the same
// file:line: key: errors as Parse: listen addresses resolvable and bindable,
// the password, CA, certificate and key files readable and valid, buffer.dir
// not a file, and what a sensor type checks (sensors.Prober). It changes
// nothing: an address in use is not an error, since it may be the running
// daemon's own (the start reports it if it is still taken), and the files
// are read again where they are used.
func Probe(c *Config) error {
	v := &validator{file: c.File, line: func(path string) int { return lineOf(c.probeLines, path) }}
	v.probeListen("metrics.listen", c.Metrics.Listen)
	if c.EmbeddedBroker.Enabled {
		v.probeListen("embedded_broker.listen", c.EmbeddedBroker.Listen)
	}
	if c.Broker.PasswordFile != "" {
		if _, err := readPasswordFile(c.Broker.PasswordFile); err != nil {
			v.add("broker.password_file", "%v", err)
		}
	}
	v.probeTLS(c.Broker.TLS)
	v.probeOperator(c)
	if d := c.Buffer.Dir; d != "" {
		if fi, err := os.Stat(d); err == nil && !fi.IsDir() {
			v.add("buffer.dir", "%s exists and is not a directory", d)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			v.add("buffer.dir", "%v", unwrapPath(err))
		}
	}
	for i, s := range c.Sensors {
		if pr, ok := s.Source.(sensors.Prober); ok {
			v.sourceErrors(fmt.Sprintf("sensors[%d]", i), pr.Probe())
		}
	}
	if len(v.errs) > 0 {
		return sorted(v.errs)
	}
	return nil
}

// probeLines keeps the lines Probe may report at: those of every key outside
// sensors, and of the keys of sensors whose type probes. The config does not
// hold on to the lines of every sensor's keys: at 10,000 sensors they weigh.
func probeLines(c *Config, all map[string]place) map[string]place {
	probes := map[string]bool{}
	for i, s := range c.Sensors {
		if _, ok := s.Source.(sensors.Prober); ok {
			probes[fmt.Sprintf("sensors[%d]", i)] = true
		}
	}
	lines := map[string]place{}
	for path, pl := range all {
		if !strings.HasPrefix(path, "sensors[") {
			lines[path] = pl
		} else if i := strings.IndexByte(path, ']'); i > 0 && probes[path[:i+1]] {
			lines[path] = pl
		}
	}
	return lines
}

func (v *validator) probeTLS(t TLS) {
	if t.CAFile != "" {
		pem, err := readLimited(t.CAFile)
		if err != nil {
			v.add("broker.tls.ca_file", "cannot read: %v", unwrapPath(err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			v.add("broker.tls.ca_file", "%s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" && t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.add("broker.tls.cert_file", "cannot load the client certificate: %v", unwrapPath(err))
		}
	}
}

// probeListen checks that addr can be listened on (its form was checked by
// Parse). An address already in use is not an error here: it may be this
// daemon's own running instance.
func (v *validator) probeListen(path, addr string) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		if _, err := net.LookupHost(host); err != nil {
			v.add(path, "cannot resolve host %q", host)
			return
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return
		}
		v.add(path, "cannot listen on %s: %v", addr, unwrapSyscall(err))
		return
	}
	l.Close()
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func unwrapSyscall(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}
