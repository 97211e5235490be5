package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/internal/testenv"
)

// TestServeTLS runs `lethe serve` with a certificate from a throwaway CA
// against a Vault that serves HTTPS with a CA of its own: Lethe serves HTTPS
// only, and reaches Vault only when VAULT_CACERT names Vault's CA.
//
// Not parallel: vault/api reads VAULT_CACERT from the process environment,
// so the test sets it with t.Setenv.
func TestServeTLS(t *testing.T) {
	certFile, keyFile, lethePool := writeTestCertificate(t)
	v := startTLSVault(t)
	if !strings.HasPrefix(v.Addr(), "https://127.0.0.1:") || v.CACert() == "" {
		t.Fatalf("TLS Vault: Addr %q, CACert %q; want https://127.0.0.1:port and a CA file", v.Addr(), v.CACert())
	}
	root := tlsVaultRoot(t, v)
	lethe, mount, prefix := testenv.LetheVaultAt(t, root)
	const adminToken = "tls-test-admin-token-0123456789abcdef"
	vars := map[string]string{
		"LETHE_DATABASE_URL":     testenv.MigratedDatabase(t),
		"LETHE_VAULT_ADDR":       v.Addr(),
		"LETHE_VAULT_TOKEN":      lethe.Token(),
		"LETHE_VAULT_MOUNT":      mount,
		"LETHE_VAULT_PREFIX":     prefix,
		"LETHE_VAULT_TIMEOUT":    "2s",
		"LETHE_LISTEN_ADDR":      "127.0.0.1:0",
		"LETHE_TLS_CERT":         certFile,
		"LETHE_TLS_KEY":          keyFile,
		"LETHE_ADMIN_TOKEN":      adminToken,
		"LETHE_SHUTDOWN_TIMEOUT": "5s",
	}
	trusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: lethePool, MinVersion: tls.VersionTLS12},
	}}
	defer trusting.CloseIdleConnections()
	erasureURL := func(base string) string {
		return base + "/v1/subjects/" + url.PathEscape("ada@example.com") + "/erasure"
	}

	// Without Vault's CA — not in the environment, and not in the system's
	// trust store, being made just now — Lethe cannot reach Vault.
	for _, k := range []string{"VAULT_CACERT", "VAULT_CACERT_BYTES", "VAULT_CAPATH", "VAULT_SKIP_VERIFY"} {
		t.Setenv(k, "") // vault/api ignores empty variables
	}
	t.Run("vault CA not trusted", func(t *testing.T) {
		// With a token, serve does not call Vault before serving: it
		// starts, and says it is not ready.
		s := startServe(t, vars)
		if s.startErr != nil {
			t.Fatalf("serve: %v; want it to serve, not ready; stderr:\n%s", s.startErr, s.stderr.String())
		}
		status, checks, body := readyz(t, trusting, s.base)
		if got, want := status, http.StatusServiceUnavailable; got != want {
			t.Errorf("GET /readyz: status got %d, want %d; body %s", got, want, body)
		}
		if got, want := checks, "postgres:ok schema:ok vault:failed"; got != want {
			t.Errorf("GET /readyz checks: got %q, want %q", got, want)
		}
		status, problem := getProblem(t, trusting, erasureURL(s.base), adminToken)
		if got, want := status, http.StatusServiceUnavailable; got != want || !strings.HasSuffix(problem, "/key-store-unavailable") {
			t.Errorf("GET erasure: got %d %s, want %d key-store-unavailable", got, problem, want)
		}
		s.stop(t)
		// The failures were Vault's certificate, not an unreachable address.
		if log := s.stderr.String(); !isCertificateError(log) {
			t.Errorf("stderr: got %q, want Vault's certificate error logged", log)
		}
	})
	if _, err := root.KVv2(mount).Get(testenv.Context(t), prefix+"/ref-secret"); !errors.Is(err, vaultapi.ErrSecretNotFound) {
		t.Fatalf("ref secret after the untrusted run: got %v, want ErrSecretNotFound (Lethe wrote nothing)", err)
	}

	t.Setenv("VAULT_CACERT", v.CACert())
	s := startServe(t, vars)
	if s.startErr != nil {
		t.Fatalf("serve with VAULT_CACERT: %v; stderr:\n%s", s.startErr, s.stderr.String())
	}
	if !strings.HasPrefix(s.base, "https://") {
		t.Errorf("serving address: got %s, want https://", s.base)
	}

	// Over HTTPS, with a client trusting the throwaway CA only: ready, and
	// Vault answers Lethe's token.
	status, checks, body := readyz(t, trusting, s.base)
	if got, want := status, http.StatusOK; got != want {
		t.Errorf("GET /readyz: status got %d, want %d; body %s", got, want, body)
	}
	if got, want := checks, "postgres:ok schema:ok vault:ok"; got != want {
		t.Errorf("GET /readyz checks: got %q, want %q", got, want)
	}
	// An erasure lookup needs the subject reference secret, read (here
	// created) in Vault with Lethe's token.
	status, problem := getProblem(t, trusting, erasureURL(s.base), adminToken)
	if got, want := status, http.StatusNotFound; got != want || !strings.HasSuffix(problem, "/not-erased") {
		t.Errorf("GET erasure: got %d %s, want %d not-erased", got, problem, want)
	}
	if _, err := root.KVv2(mount).Get(testenv.Context(t), prefix+"/ref-secret"); err != nil {
		t.Errorf("ref secret in Vault: got %v, want it created by Lethe over TLS", err)
	}

	// Plain HTTP to the HTTPS port gets nothing done.
	u, err := url.Parse(s.base)
	if err != nil {
		t.Fatal(err)
	}
	plainURL := "http://" + u.Host + "/healthz"
	plain := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	resp, err := plain.Get(plainURL)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			t.Errorf("GET %s: got %d %s, want an error or no 2xx", plainURL, resp.StatusCode, body)
		}
	}

	// A client that does not trust the throwaway CA (the system's roots
	// only) refuses Lethe's certificate.
	untrusting := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	resp, err = untrusting.Get(s.base + "/healthz")
	if err == nil {
		resp.Body.Close()
		t.Errorf("GET /healthz without trusting the CA: got %d, want a certificate error", resp.StatusCode)
	} else if uae := (x509.UnknownAuthorityError{}); !errors.As(err, &uae) {
		t.Errorf("GET /healthz without trusting the CA: got %v, want x509.UnknownAuthorityError", err)
	}

	s.stop(t)
	if _, err := trusting.Get(s.base + "/healthz"); err == nil {
		t.Errorf("GET /healthz after shutdown: got nil, want an error")
	}
}

// servingLine is serve's log line with the address it serves on.
var servingLine = regexp.MustCompile(`msg="lethe serving" addr=(\S+)`)

// served is a `lethe serve` run in this process.
type served struct {
	base     string // such as https://127.0.0.1:40123
	startErr error  // set if serve returned before serving
	stderr   *testenv.SyncBuffer
	cancel   context.CancelFunc
	done     chan error
}

// startServe runs `lethe serve` with vars as its environment and waits
// until it serves or returns. The run is stopped when the test ends, if
// stop was not called.
func startServe(t *testing.T, vars map[string]string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{stderr: new(testenv.SyncBuffer), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- run(ctx, []string{"serve"}, env(vars), nil, io.Discard, s.stderr) }()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	deadline := time.After(30 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(s.stderr.String()); m != nil {
			s.base = m[1]
			return s
		}
		select {
		case err := <-s.done:
			if err == nil {
				err = errors.New("returned nil before serving")
			}
			s.startErr = err
			s.done <- err // for the clean-up
			return s
		case <-deadline:
			t.Fatalf("no serving line after 30s; stderr:\n%s", s.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop cancels serve's context and checks that it returns nil and says so.
func (s *served) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		s.done <- err // for the clean-up
		if err != nil {
			t.Errorf("run after cancel: got %v, want nil; stderr:\n%s", err, s.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("run did not return 15s after cancel; stderr:\n%s", s.stderr.String())
	}
	if !strings.Contains(s.stderr.String(), "msg=stopped") {
		t.Errorf("stderr: got %q, want the stopped line", s.stderr.String())
	}
}

// readyz returns GET /readyz's status and its checks as "name:ok name:failed".
func readyz(t *testing.T, c *http.Client, base string) (status int, checks string, body []byte) {
	t.Helper()
	resp, err := c.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	if resp.TLS == nil {
		t.Errorf("GET /readyz: answered without TLS")
	}
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET /readyz: read body: %v", err)
	}
	var doc struct {
		Checks []struct {
			Name string `json:"name"`
			OK   bool   `json:"ok"`
		} `json:"checks"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("GET /readyz: decode %s: %v", body, err)
	}
	var parts []string
	for _, c := range doc.Checks {
		state := "failed"
		if c.OK {
			state = "ok"
		}
		parts = append(parts, c.Name+":"+state)
	}
	return resp.StatusCode, strings.Join(parts, " "), body
}

// getProblem makes an authenticated GET and returns the status and the
// problem type of the answer ("" if it is not a problem).
func getProblem(t *testing.T, c *http.Client, u, token string) (status int, problemType string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	var p struct {
		Type string `json:"type"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&p)
	return resp.StatusCode, p.Type
}

// isCertificateError reports whether s holds Go's error for a certificate
// signed by a CA the client does not trust.
func isCertificateError(s string) bool {
	return strings.Contains(s, "certificate signed by unknown authority")
}

// startTLSVault starts a Vault dev server for this test that serves HTTPS
// with a CA of its own; it is stopped when the test ends.
func startTLSVault(t *testing.T) *devenv.Vault {
	t.Helper()
	repo, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devenv.VaultBinary(repo)
	if err != nil {
		t.Fatalf("no vault program for a TLS Vault: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin, TLS: true})
	if err != nil {
		t.Fatalf("start a TLS Vault: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := v.Stop(ctx); err != nil {
			t.Errorf("stop the TLS Vault: %v", err)
		}
	})
	return v
}

// tlsVaultRoot returns a root client (no retries) of v that trusts v's CA
// explicitly, whatever the environment says.
func tlsVaultRoot(t *testing.T, v *devenv.Vault) *vaultapi.Client {
	t.Helper()
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		t.Fatalf("vault client config: %v", cfg.Error)
	}
	cfg.Address = v.Addr()
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{CACert: v.CACert()}); err != nil {
		t.Fatalf("vault client TLS: %v", err)
	}
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		t.Fatalf("vault client: %v", err)
	}
	c.SetToken(v.RootToken())
	return c
}

// writeTestCertificate makes a throwaway CA and a certificate it signs for
// 127.0.0.1 and localhost (ECDSA P-256, valid for an hour), writes the
// certificate and its key as PEM files in a temporary folder, and returns
// their paths and a pool holding the CA alone.
func writeTestCertificate(t *testing.T) (certFile, keyFile string, ca *x509.CertPool) {
	t.Helper()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lethe test CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "lethe-cert.pem"), filepath.Join(dir, "lethe-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	ca = x509.NewCertPool()
	ca.AddCert(caCert)
	return certFile, keyFile, ca
}
