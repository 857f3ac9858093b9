package metrics

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA issues certificates for the web config tests and writes them as
// PEM files into dir.
type testCA struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, dir string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, key: key, pool: x509.NewCertPool()}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.pool.AddCert(ca.cert)
	writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", der)
	return ca
}

// issue writes name.pem and name.key and returns the pair.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	writePEM(t, filepath.Join(ca.dir, name+".pem"), "CERTIFICATE", der)
	writePEM(t, filepath.Join(ca.dir, name+".key"), "EC PRIVATE KEY", kder)
	pair, err := tls.LoadX509KeyPair(filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// bcryptHash is a hash made by htpasswd (testdata/htpasswd), or a fresh
// one made by htpasswd when it is installed.
func bcryptHash(t *testing.T, user, pass string) string {
	t.Helper()
	if _, err := exec.LookPath("htpasswd"); err == nil {
		out, err := exec.Command("htpasswd", "-nbB", "-C", "5", user, pass).Output()
		if err != nil {
			t.Fatal(err)
		}
		_, h, _ := strings.Cut(strings.TrimSpace(string(out)), ":")
		return h
	}
	if os.Getenv("GATEWAYD_REQUIRE_HTPASSWD") == "1" {
		t.Fatal("htpasswd is not installed (Debian: apache2-utils)")
	}
	b, err := os.ReadFile("testdata/htpasswd")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if u, h, ok := strings.Cut(line, ":"); ok && u == user && pass == "scrape-secret" {
			return h
		}
	}
	t.Fatalf("no hash for %s in testdata/htpasswd", user)
	return ""
}

// serve runs a Server with the given web config on a free port of
// 127.0.0.1 until the test ends.
func serve(t *testing.T, webConfig string) *Server {
	t.Helper()
	s := NewServer(New("test"), NewLiveness(time.Minute), func() bool { return true }, "v1", slog.New(slog.DiscardHandler))
	src := fixedStatus(exampleStatus())
	s.SetStatus(&src)
	if err := s.SetWebConfig(webConfig); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return s
}

type request struct {
	name       string
	path       string
	user, pass string
	cert       *tls.Certificate
	wantCode   int    // 0: the TLS handshake must fail
	wantHeader string // WWW-Authenticate on a 401
}

func check(t *testing.T, base string, roots *x509.CertPool, reqs []request) {
	t.Helper()
	for _, r := range reqs {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
		if r.cert != nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{*r.cert}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		req, _ := http.NewRequest(http.MethodGet, base+r.path, nil)
		if r.user != "" {
			req.SetBasicAuth(r.user, r.pass)
		}
		resp, err := c.Do(req)
		tr.CloseIdleConnections()
		if r.wantCode == 0 {
			if err == nil {
				resp.Body.Close()
				t.Errorf("%s: got %d, want a failed TLS handshake", r.name, resp.StatusCode)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != r.wantCode {
			t.Errorf("%s: %s = %d, want %d", r.name, r.path, resp.StatusCode, r.wantCode)
		}
		if r.wantCode == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: 401 without a Basic challenge: %q", r.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestWebConfigTLSClientCertsAndBasicAuth serves over TLS that requires a
// client certificate and basic auth: only a client with both gets through,
// on every endpoint.
func TestWebConfigTLSClientCertsAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	client := ca.issue(t, "client", x509.ExtKeyUsageClientAuth)
	other := newTestCA(t, t.TempDir()).issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	cfg := filepath.Join(dir, "web.yml")
	// Relative paths are relative to the web config file.
	os.WriteFile(cfg, []byte(fmt.Sprintf(`tls_server_config:
  cert_file: server.pem
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.pem
basic_auth_users:
  prometheus: %s
`, bcryptHash(t, "prometheus", "scrape-secret"))), 0o600)
	s := serve(t, cfg)
	base := "https://" + s.Addr()
	var reqs []request
	for _, p := range []string{"/metrics", "/", "/api/status", "/healthz", "/readyz"} {
		reqs = append(reqs,
			request{name: "no client certificate", path: p, user: "prometheus", pass: "scrape-secret"},
			request{name: "a certificate of another CA", path: p, cert: &other, user: "prometheus", pass: "scrape-secret"},
			request{name: "no credentials", path: p, cert: &client, wantCode: 401},
			request{name: "wrong password", path: p, cert: &client, user: "prometheus", pass: "nope", wantCode: 401},
			request{name: "unknown user", path: p, cert: &client, user: "root", pass: "scrape-secret", wantCode: 401},
			request{name: "certificate and password", path: p, cert: &client, user: "prometheus", pass: "scrape-secret", wantCode: 200},
		)
	}
	check(t, base, ca.pool, reqs)
	// Plain HTTP on the TLS port gets nowhere.
	if resp, err := http.Get("http://" + s.Addr() + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS port")
		}
	}
}

// TestWebConfigBasicAuthOverTLS: TLS without client certificates, basic
// auth; and a changed password applies without a restart.
func TestWebConfigBasicAuthOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	cfg := filepath.Join(dir, "web.yml")
	write := func(pass string) {
		os.WriteFile(cfg, []byte(fmt.Sprintf("tls_server_config: {cert_file: server.pem, key_file: server.key}\nbasic_auth_users:\n  prometheus: %q\n",
			bcryptHash(t, "prometheus", pass))), 0o600)
	}
	write("scrape-secret")
	s := serve(t, cfg)
	base := "https://" + s.Addr()
	check(t, base, ca.pool, []request{
		{name: "no credentials", path: "/metrics", wantCode: 401},
		{name: "password", path: "/metrics", user: "prometheus", pass: "scrape-secret", wantCode: 200},
		{name: "password", path: "/", user: "prometheus", pass: "scrape-secret", wantCode: 200},
	})
	if _, err := exec.LookPath("htpasswd"); err != nil {
		t.Skip("htpasswd not installed: the password change is not tested")
	}
	write("rotated")
	check(t, base, ca.pool, []request{
		{name: "old password after the change", path: "/metrics", user: "prometheus", pass: "scrape-secret", wantCode: 401},
		{name: "new password", path: "/metrics", user: "prometheus", pass: "rotated", wantCode: 200},
	})
}

// TestWebConfigBasicAuthPlainHTTP: basic auth alone, no TLS.
func TestWebConfigBasicAuthPlainHTTP(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web.yml")
	os.WriteFile(cfg, []byte("basic_auth_users:\n  prometheus: "+bcryptHash(t, "prometheus", "scrape-secret")+"\n"), 0o600)
	s := serve(t, cfg)
	check(t, "http://"+s.Addr(), nil, []request{
		{name: "no credentials", path: "/healthz", wantCode: 401},
		{name: "no credentials", path: "/", wantCode: 401},
		{name: "password", path: "/healthz", user: "prometheus", pass: "scrape-secret", wantCode: 200},
		{name: "password", path: "/api/status", user: "prometheus", pass: "scrape-secret", wantCode: 200},
	})
}

// TestWebConfigInvalid: a bad web config is refused before serving, with
// the file named.
func TestWebConfigInvalid(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"unknown-key.yml": "tls_server_config: {cert_file: a.pem, key_file: a.key}\nbasic_auth: {}\n",
		"not-bcrypt.yml":  "basic_auth_users: {prometheus: plaintext}\n",
		"no-cert.yml":     "tls_server_config: {cert_file: missing.pem, key_file: missing.key}\n",
		"missing.yml":     "",
	} {
		p := filepath.Join(dir, name)
		if content != "" {
			os.WriteFile(p, []byte(content), 0o600)
		}
		s := NewServer(New("test"), NewLiveness(time.Minute), func() bool { return true }, "v1", slog.New(slog.DiscardHandler))
		if err := s.SetWebConfig(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
