package devenv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/internal/devenv"
)

// testContext returns a context that ends with the test or after two
// minutes.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// logWriter sends progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// clusterDir returns a new folder for a PostgreSQL cluster that the postgres
// user can reach when the test runs as root (t.TempDir's parent is closed
// to other users), removed when the test ends.
func clusterDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "devenv-test-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// mustStartPostgres starts a server in dir, stopped when the test ends.
func mustStartPostgres(t *testing.T, dir string) *devenv.Postgres {
	t.Helper()
	ctx := testContext(t)
	pg, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: dir, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := pg.Stop(context.Background()); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return pg
}

// psql runs SQL with the psql program, as a client would.
func psql(t *testing.T, url, sql string) string {
	t.Helper()
	out, err := exec.Command("psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql).CombinedOutput()
	if err != nil {
		t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestPostgresRestartKeepsData(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql is not installed")
	}
	dir := clusterDir(t)
	pg := mustStartPostgres(t, dir)

	if got, want := pg.URL("postgres"), "postgres://root@127.0.0.1:"+strconv.Itoa(pg.Port())+"/postgres?sslmode=disable"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(pg.BinDir(), "pg_ctl")); err != nil {
		t.Errorf("BinDir %s has no pg_ctl: %v", pg.BinDir(), err)
	}
	if got, want := psql(t, pg.URL("postgres"), "SHOW fsync"), "off"; got != want {
		t.Errorf("fsync = %q, want %q", got, want)
	}
	if got, want := psql(t, pg.URL("postgres"), "SHOW max_connections"), "200"; got != want {
		t.Errorf("max_connections = %q, want %q", got, want)
	}
	if err := pg.CreateDatabase(testContext(t), "lethe"); err != nil {
		t.Fatal(err)
	}
	if err := pg.CreateDatabase(testContext(t), "lethe"); err != nil {
		t.Fatalf("second CreateDatabase: %v", err)
	}
	psql(t, pg.URL("lethe"), "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	if err := pg.Stop(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := pg.Stop(testContext(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	pg2 := mustStartPostgres(t, dir)
	if got, want := psql(t, pg2.URL("lethe"), "SELECT v FROM kept"), "still here"; got != want {
		t.Errorf("after restart: got %q, want %q", got, want)
	}
	out, err := pg2.Psql(testContext(t), "lethe", "SELECT count(*) FROM kept")
	if err != nil {
		t.Fatal(err)
	}
	if out != "1" {
		t.Errorf("Psql: got %q, want %q", out, "1")
	}
}

func TestPostgresLeftovers(t *testing.T) {
	t.Parallel()
	dir := clusterDir(t)
	ctx := testContext(t)

	// A server that an earlier run did not stop.
	old, err := devenv.StartPostgres(ctx, devenv.PostgresOptions{Dir: dir, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.Stop(context.Background()) })
	pg := mustStartPostgres(t, dir)
	if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(old.Port()), time.Second); err == nil {
		c.Close()
		if old.Port() != pg.Port() {
			t.Errorf("the old server on port %d is still running", old.Port())
		}
	}
	psql(t, pg.URL("postgres"), "SELECT 1")
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	// A server that crashed: its pid file names a process that is gone.
	pidFile := filepath.Join(dir, "data", "postmaster.pid")
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := strconv.Itoa(dead.Process.Pid) + "\n" + filepath.Join(dir, "data") + "\n"
	if err := os.WriteFile(pidFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	// Its pid now belongs to another program: the test itself.
	pg = mustStartPostgres(t, dir)
	psql(t, pg.URL("postgres"), "SELECT 1")
	if err := pg.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pg = mustStartPostgres(t, dir)
	psql(t, pg.URL("postgres"), "SELECT 1")
}

func TestPostgresFixedPortAndFsync(t *testing.T) {
	t.Parallel()
	port, err := devenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := devenv.StartPostgres(testContext(t), devenv.PostgresOptions{Dir: clusterDir(t), Port: port, Fsync: true, MaxConnections: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Stop(context.Background())
	if pg.Port() != port {
		t.Errorf("Port = %d, want %d", pg.Port(), port)
	}
	if got, want := psql(t, pg.URL("postgres"), "SHOW fsync"), "on"; got != want {
		t.Errorf("fsync = %q, want %q", got, want)
	}
	if got, want := psql(t, pg.URL("postgres"), "SHOW max_connections"), "50"; got != want {
		t.Errorf("max_connections = %q, want %q", got, want)
	}
}

func TestCheckPostgresAccess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the cluster to the postgres user")
	}
	t.Parallel()
	closed, err := os.MkdirTemp("", "devenv-test-closed-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(closed)
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(closed, "a", "pg")
	err = devenv.CheckPostgresAccess(testContext(t), target)
	if err == nil || !strings.Contains(err.Error(), "cannot enter "+closed+" ") || !strings.Contains(err.Error(), "chmod o+x") {
		t.Fatalf("got %v, want an error naming %s", err, closed)
	}
	_, err = devenv.StartPostgres(testContext(t), devenv.PostgresOptions{Dir: target})
	if err == nil || !strings.Contains(err.Error(), closed) {
		t.Fatalf("StartPostgres: got %v, want an error naming %s", err, closed)
	}
	if err := devenv.CheckPostgresAccess(testContext(t), filepath.Join(os.TempDir(), "x", "pg")); err != nil {
		t.Errorf("a folder under %s: %v", os.TempDir(), err)
	}
}

// vaultBin returns the Vault program, skipping the test if there is none,
// except in CI, where a missing Vault is a failure.
func vaultBin(t *testing.T) string {
	t.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return bin
}

// vaultCall makes a Vault API request and decodes the JSON answer into out.
func vaultCall(t *testing.T, v *devenv.Vault, method, path string, in, out any) int {
	t.Helper()
	var body bytes.Buffer
	if in != nil {
		if err := json.NewEncoder(&body).Encode(in); err != nil {
			t.Fatal(err)
		}
	}
	req, err := http.NewRequestWithContext(testContext(t), method, v.Addr()+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Vault-Token", v.RootToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, resp.Status, err)
		}
	}
	return resp.StatusCode
}

func writeSecret(t *testing.T, v *devenv.Vault, path, value string) {
	t.Helper()
	in := map[string]any{"data": map[string]string{"value": value}}
	if code := vaultCall(t, v, http.MethodPost, "/v1/secret/data/"+path, in, nil); code != http.StatusOK {
		t.Fatalf("write secret: status %d, want 200", code)
	}
}

func readSecret(t *testing.T, v *devenv.Vault, path string) string {
	t.Helper()
	var out struct {
		Data struct {
			Data map[string]string `json:"data"`
		} `json:"data"`
	}
	if code := vaultCall(t, v, http.MethodGet, "/v1/secret/data/"+path, nil, &out); code != http.StatusOK {
		t.Fatalf("read secret: status %d, want 200", code)
	}
	return out.Data.Data["value"]
}

func TestVaultDev(t *testing.T) {
	t.Parallel()
	bin := vaultBin(t)
	v, err := devenv.StartVault(testContext(t), devenv.VaultOptions{Bin: bin, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop(context.Background())
	if !strings.HasPrefix(v.Addr(), "http://127.0.0.1:") || len(v.RootToken()) != 32 {
		t.Errorf("Addr %q, token of %d characters", v.Addr(), len(v.RootToken()))
	}
	resp, err := http.Get(v.Addr() + "/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health: status %d, want 200", resp.StatusCode)
	}
	writeSecret(t, v, "devenv-test", "hello")
	if got, want := readSecret(t, v, "devenv-test"), "hello"; got != want {
		t.Errorf("read back %q, want %q", got, want)
	}

	if err := v.Stop(testContext(t)); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(testContext(t)); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if resp, err := http.Get(v.Addr() + "/v1/sys/health"); err == nil {
		resp.Body.Close()
		t.Error("vault still answers after Stop")
	}
}

func TestVaultPersistent(t *testing.T) {
	t.Parallel()
	bin := vaultBin(t)
	dir := t.TempDir()
	start := func() *devenv.Vault {
		t.Helper()
		v, err := devenv.StartVault(testContext(t), devenv.VaultOptions{Bin: bin, Dir: dir, Log: logWriter{t}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = v.Stop(context.Background()) })
		return v
	}

	v := start()
	writeSecret(t, v, "kept", "across restarts")
	fi, err := os.Stat(filepath.Join(dir, "init.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("init.json mode %v, want 0600", fi.Mode().Perm())
	}
	if err := v.Stop(testContext(t)); err != nil {
		t.Fatal(err)
	}

	v2 := start()
	if v2.Addr() != v.Addr() {
		t.Errorf("address changed across restarts: %s, then %s", v.Addr(), v2.Addr())
	}
	if v2.RootToken() != v.RootToken() {
		t.Error("root token changed across restarts")
	}
	if got, want := readSecret(t, v2, "kept"), "across restarts"; got != want {
		t.Errorf("after restart: got %q, want %q", got, want)
	}

	// A server left running by a run that could not stop it (its pid file
	// is still there) is stopped by the next start on the same folder.
	if err := v2.Stop(testContext(t)); err != nil {
		t.Fatal(err)
	}
	leftover := exec.Command(bin, "server", "-config="+filepath.Join(dir, "vault.hcl"))
	logFile, err := os.OpenFile(filepath.Join(dir, "vault.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	leftover.Stdout, leftover.Stderr = logFile, logFile
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	logFile.Close()
	exited := make(chan struct{})
	go func() { _ = leftover.Wait(); close(exited) }()
	t.Cleanup(func() { _ = leftover.Process.Kill() })
	if err := os.WriteFile(filepath.Join(dir, "vault.pid"), []byte(strconv.Itoa(leftover.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	v3 := start()
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("the leftover Vault server is still running")
	}
	if got, want := readSecret(t, v3, "kept"), "across restarts"; got != want {
		t.Errorf("after leftover: got %q, want %q", got, want)
	}
}

func TestVaultBinary(t *testing.T) {
	dir := t.TempDir()
	if _, err := devenv.VaultBinary(dir); err == nil || !strings.Contains(err.Error(), "make vault") {
		t.Errorf("no binary: got %v, want an error mentioning make vault", err)
	}
	bin := filepath.Join(dir, "bin", "vault")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VAULT_BIN", "")
	if got, err := devenv.VaultBinary(dir); err != nil || got != bin {
		t.Errorf("got %q, %v; want %q", got, err, bin)
	}
	t.Setenv("VAULT_BIN", "/bin/sh")
	if got, err := devenv.VaultBinary(dir); err != nil || got != "/bin/sh" {
		t.Errorf("VAULT_BIN: got %q, %v; want /bin/sh", got, err)
	}
	t.Setenv("VAULT_BIN", filepath.Join(dir, "missing"))
	if _, err := devenv.VaultBinary(dir); err == nil {
		t.Error("VAULT_BIN naming a missing file: no error")
	}
}

func TestRepoRootAndFreePort(t *testing.T) {
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(b), "module "+devenv.ModulePath) {
		t.Errorf("RepoRoot %s: go.mod %v", root, err)
	}
	port, err := devenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if !devenv.PortFree(port) {
		t.Errorf("FreePort %d is not free", port)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if devenv.PortFree(port) {
		t.Errorf("PortFree(%d) = true while it is bound", port)
	}
}
