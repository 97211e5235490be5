package devenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// VaultOptions configures StartVault.
type VaultOptions struct {
	// Bin is the vault program; "" means VaultBinary of RepoRoot.
	Bin string
	// Dir is the folder of a persistent server: configuration, file storage,
	// unseal key and root token (init.json, mode 0600), state and log. ""
	// starts a dev server instead, which keeps everything in memory.
	Dir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one (for a
	// persistent server, the one used last time if it is still free).
	Port int
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// TLS makes a dev server serve HTTPS only (vault server -dev-tls): Vault
	// generates a CA and a certificate for 127.0.0.1 and localhost into a
	// temporary folder that Stop removes. Addr then starts with https://
	// and CACert names the CA's PEM file, which clients must trust. Only
	// for dev servers: StartVault refuses TLS with Dir.
	TLS bool
}

// Vault is a Vault server started by StartVault, unsealed, with a KV
// version 2 secrets engine mounted at secret/.
type Vault struct {
	addr    string
	token   string
	log     io.Writer
	logPath string
	// tempLog is set for a dev server: its log is removed by Stop.
	tempLog bool
	pidFile string
	client  *http.Client
	// tlsDir holds the CA, certificate and key of a TLS dev server; Stop
	// removes it. caFile is the CA's PEM file in it.
	tlsDir string
	caFile string

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	exit   error         // the process's exit status, set before exited closes

	mu      sync.Mutex
	stopped bool
	paused  bool
}

// Timeouts for Vault.
const (
	vaultReadyTimeout = 30 * time.Second
	vaultStopTimeout  = 10 * time.Second
)

// StartVault starts a Vault server on 127.0.0.1 and waits until it is ready.
// Without opts.Dir it is a dev server, in memory, with a random root token.
// With opts.Dir it is a persistent server: initialised on its first start
// (one unseal key, saved with the root token in opts.Dir/init.json), and
// unsealed on every start, so secrets survive restarts.
//
// The server is a child process: it is stopped by Stop, or with SIGTERM if
// the Go process dies. Its output goes to opts.Dir/vault.log, or for a dev
// server to a temporary file removed by Stop.
func StartVault(ctx context.Context, opts VaultOptions) (*Vault, error) {
	var v *Vault
	var err error
	switch {
	case opts.TLS && opts.Dir != "":
		err = errors.New("TLS is for dev servers only: leave Dir empty")
	case opts.Dir == "":
		v, err = startDevVault(ctx, opts)
	default:
		v, err = startPersistentVault(ctx, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("start vault: %w", err)
	}
	return v, nil
}

func vaultBin(opts VaultOptions) (string, error) {
	if opts.Bin != "" {
		return opts.Bin, nil
	}
	root, _ := RepoRoot() // VaultBinary explains what is missing
	return VaultBinary(root)
}

func newVault(opts VaultOptions, port int) *Vault {
	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	v := &Vault{
		addr:   scheme + "://127.0.0.1:" + strconv.Itoa(port),
		log:    opts.Log,
		client: &http.Client{Timeout: 10 * time.Second},
	}
	if v.log == nil {
		v.log = io.Discard
	}
	return v
}

func startDevVault(ctx context.Context, opts VaultOptions) (*Vault, error) {
	bin, err := vaultBin(opts)
	if err != nil {
		return nil, err
	}
	// A port picked here may be taken before Vault binds it; then pick
	// another.
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				return nil, err
			}
		}
		v := newVault(opts, port)
		v.token = randomHex(16)
		v.tempLog = true
		logFile, err := os.CreateTemp("", "lethe-vault-dev-*.log")
		if err != nil {
			return nil, err
		}
		v.logPath = logFile.Name()
		args := []string{"server", "-dev",
			"-dev-root-token-id=" + v.token,
			"-dev-listen-address=127.0.0.1:" + strconv.Itoa(port),
			"-dev-no-store-token"}
		if opts.TLS {
			if v.tlsDir, err = os.MkdirTemp("", "lethe-vault-tls-"); err != nil {
				logFile.Close()
				_ = os.Remove(v.logPath)
				return nil, err
			}
			v.caFile = filepath.Join(v.tlsDir, "vault-ca.pem")
			args = append(args, "-dev-tls", "-dev-tls-cert-dir="+v.tlsDir)
		}
		how := ""
		if opts.TLS {
			how = " with TLS"
		}
		fmt.Fprintf(v.log, "starting a Vault dev server (in memory%s) on 127.0.0.1:%d\n", how, port)
		err = v.launch(logFile, bin, args...)
		if err == nil && opts.TLS {
			err = v.trustDevCA(ctx)
		}
		if err == nil {
			err = v.waitHealthy(ctx)
		}
		if err == nil {
			err = v.ensureKV2(ctx)
		}
		if err == nil {
			return v, nil
		}
		log := readFrom(v.logPath, 0)
		_ = v.Stop(context.WithoutCancel(ctx))
		_ = os.Remove(v.logPath)
		if v.tlsDir != "" {
			_ = os.RemoveAll(v.tlsDir) // Stop does nothing if launch failed
		}
		if opts.Port != 0 || attempt == 3 || !strings.Contains(log, "address already in use") {
			return nil, fmt.Errorf("%w\nvault log:\n%s", err, indent(lastLines(log, 20)))
		}
		fmt.Fprintf(v.log, "port %d was taken meanwhile; trying another\n", port)
	}
}

// vaultState is the state file of a persistent server (Dir/state.json).
type vaultState struct {
	Port int `json:"port"`
}

// vaultInit is what Dir/init.json holds: the output of vault operator init.
type vaultInit struct {
	UnsealKeysB64 []string `json:"unseal_keys_b64"`
	UnsealKeysHex []string `json:"unseal_keys_hex"`
	RootToken     string   `json:"root_token"`
}

func startPersistentVault(ctx context.Context, opts VaultOptions) (*Vault, error) {
	bin, err := vaultBin(opts)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "vault.hcl")
	pidFile := filepath.Join(dir, "vault.pid")
	if err := stopLeftoverVault(pidFile, configPath, opts.Log); err != nil {
		return nil, err
	}

	port, err := persistentPort(filepath.Join(dir, "state.json"), opts.Port)
	if err != nil {
		return nil, err
	}
	v := newVault(opts, port)
	v.pidFile = pidFile
	v.logPath = filepath.Join(dir, "vault.log")

	config := fmt.Sprintf(`# Written by lethe's devenv on every start: edits are lost.
storage "file" {
  path = %s
}

listener "tcp" {
  address     = "127.0.0.1:%d"
  tls_disable = true
}

api_addr      = %q
disable_mlock = true
ui            = false
`, strconv.Quote(filepath.Join(dir, "storage")), port, v.addr)
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(v.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	logStart, _ := logFile.Seek(0, io.SeekEnd)
	fmt.Fprintf(logFile, "==== %s: starting vault server -config=%s\n", time.Now().Format(time.RFC3339), configPath)

	fmt.Fprintf(v.log, "starting Vault on 127.0.0.1:%d (data in %s)\n", port, dir)
	if err := v.launch(logFile, bin, "server", "-config="+configPath); err != nil {
		return nil, err
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(v.cmd.Process.Pid)+"\n"), 0o600); err != nil {
		_ = v.Stop(ctx)
		return nil, err
	}
	if err := v.initAndUnseal(ctx, dir); err != nil {
		_ = v.Stop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("%w\nvault log (%s):\n%s", err, v.logPath, indent(lastLines(readFrom(v.logPath, logStart), 20)))
	}
	return v, nil
}

// persistentPort returns the port for a persistent server: want if set,
// else the port in the state file if it is free, else a new free port,
// which is saved.
func persistentPort(stateFile string, want int) (int, error) {
	if want != 0 {
		return want, nil
	}
	var st vaultState
	if b, err := os.ReadFile(stateFile); err == nil {
		_ = json.Unmarshal(b, &st) // a broken file only loses the port
	}
	if st.Port != 0 && PortFree(st.Port) {
		return st.Port, nil
	}
	port, err := FreePort()
	if err != nil {
		return 0, err
	}
	b, _ := json.MarshalIndent(vaultState{Port: port}, "", "  ")
	if err := writeFileAtomic(stateFile, append(b, '\n'), 0o600); err != nil {
		return 0, err
	}
	return port, nil
}

// stopLeftoverVault stops a server left running on the same configuration
// by an earlier run that could not stop it (two servers must never share
// the file storage).
func stopLeftoverVault(pidFile, configPath string, log io.Writer) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return os.Remove(pidFile)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("-config="+configPath)) {
		return os.Remove(pidFile) // gone, or the pid is someone else's now
	}
	if log != nil {
		fmt.Fprintf(log, "stopping the Vault server left running on %s (pid %d)\n", configPath, pid)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	_ = proc.Signal(syscall.SIGINT)
	deadline := time.Now().Add(vaultStopTimeout)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = proc.Kill()
			time.Sleep(200 * time.Millisecond)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return os.Remove(pidFile)
}

// initAndUnseal initialises a new server (saving its key and token in
// dir/init.json), unseals it, and mounts KV v2 at secret/.
func (v *Vault) initAndUnseal(ctx context.Context, dir string) error {
	initFile := filepath.Join(dir, "init.json")
	var status struct {
		Initialized bool `json:"initialized"`
	}
	err := v.poll(ctx, func(ctx context.Context) bool {
		return v.call(ctx, http.MethodGet, "/v1/sys/init", "", nil, &status) == nil
	})
	if err != nil {
		return fmt.Errorf("wait for vault to answer: %w", err)
	}

	var keys vaultInit
	if !status.Initialized {
		if _, err := os.Stat(initFile); err == nil {
			fmt.Fprintf(v.log, "Vault's storage in %s is empty: replacing the old %s\n", dir, initFile)
		}
		fmt.Fprintf(v.log, "initialising Vault (one unseal key; key and root token saved in %s)\n", initFile)
		var resp struct {
			Keys       []string `json:"keys"`
			KeysBase64 []string `json:"keys_base64"`
			RootToken  string   `json:"root_token"`
		}
		req := map[string]int{"secret_shares": 1, "secret_threshold": 1}
		if err := v.call(ctx, http.MethodPut, "/v1/sys/init", "", req, &resp); err != nil {
			return fmt.Errorf("initialise vault: %w", err)
		}
		keys = vaultInit{UnsealKeysB64: resp.KeysBase64, UnsealKeysHex: resp.Keys, RootToken: resp.RootToken}
		b, _ := json.MarshalIndent(keys, "", "  ")
		if err := writeFileAtomic(initFile, append(b, '\n'), 0o600); err != nil {
			return fmt.Errorf("save vault's unseal key: %w", err)
		}
	} else {
		b, err := os.ReadFile(initFile)
		if err != nil {
			return fmt.Errorf("vault's storage in %s is initialised but its unseal key is lost (%w): remove %s to start over (its secrets are lost)",
				dir, err, filepath.Join(dir, "storage"))
		}
		if err := json.Unmarshal(b, &keys); err != nil || len(keys.UnsealKeysB64) == 0 || keys.RootToken == "" {
			return fmt.Errorf("%s holds no unseal key and root token", initFile)
		}
	}
	v.token = keys.RootToken

	var seal struct {
		Sealed bool `json:"sealed"`
	}
	if err := v.call(ctx, http.MethodGet, "/v1/sys/seal-status", "", nil, &seal); err != nil {
		return fmt.Errorf("vault seal status: %w", err)
	}
	if seal.Sealed {
		for _, key := range keys.UnsealKeysB64 {
			if err := v.call(ctx, http.MethodPut, "/v1/sys/unseal", "", map[string]string{"key": key}, &seal); err != nil {
				return fmt.Errorf("unseal vault: %w", err)
			}
		}
		if seal.Sealed {
			return errors.New("unseal vault: still sealed after all keys in init.json")
		}
	}
	if err := v.waitHealthy(ctx); err != nil {
		return err
	}
	return v.ensureKV2(ctx)
}

// ensureKV2 mounts KV version 2 at secret/ unless it is mounted, and waits
// until it answers.
func (v *Vault) ensureKV2(ctx context.Context) error {
	var mounts map[string]json.RawMessage
	if err := v.call(ctx, http.MethodGet, "/v1/sys/mounts", v.token, nil, &mounts); err != nil {
		return fmt.Errorf("list vault mounts: %w", err)
	}
	if raw, ok := mounts["secret/"]; ok {
		var m struct {
			Type    string            `json:"type"`
			Options map[string]string `json:"options"`
		}
		_ = json.Unmarshal(raw, &m)
		if m.Type != "kv" || m.Options["version"] != "2" {
			return fmt.Errorf("vault has a %s (options %v) secrets engine at secret/, not KV version 2", m.Type, m.Options)
		}
	} else {
		fmt.Fprintf(v.log, "mounting a KV version 2 secrets engine at secret/\n")
		req := map[string]any{"type": "kv", "options": map[string]string{"version": "2"}}
		if err := v.call(ctx, http.MethodPost, "/v1/sys/mounts/secret", v.token, req, nil); err != nil &&
			!strings.Contains(err.Error(), "path is already in use") {
			return fmt.Errorf("mount kv v2 at secret/: %w", err)
		}
	}
	// A new KV v2 mount needs a moment before it serves requests.
	err := v.poll(ctx, func(ctx context.Context) bool {
		return v.call(ctx, http.MethodGet, "/v1/secret/config", v.token, nil, nil) == nil
	})
	if err != nil {
		return fmt.Errorf("wait for kv v2 at secret/: %w", err)
	}
	return nil
}

// trustDevCA waits until a TLS dev server has written its CA file, then
// makes v's client trust that CA alone.
func (v *Vault) trustDevCA(ctx context.Context) error {
	var pool *x509.CertPool
	err := v.poll(ctx, func(context.Context) bool {
		b, err := os.ReadFile(v.caFile)
		if err != nil {
			return false
		}
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(b) { // not yet, or half, written
			return false
		}
		pool = p
		return true
	})
	if err != nil {
		return fmt.Errorf("wait for vault's CA in %s: %w", v.caFile, err)
	}
	v.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return nil
}

// waitHealthy waits until GET /v1/sys/health answers 200: initialised,
// unsealed and active.
func (v *Vault) waitHealthy(ctx context.Context) error {
	err := v.poll(ctx, func(ctx context.Context) bool {
		return v.call(ctx, http.MethodGet, "/v1/sys/health", "", nil, nil) == nil
	})
	if err != nil {
		return fmt.Errorf("wait for vault to be healthy: %w", err)
	}
	return nil
}

// poll calls ready every 100ms until it reports true, the server exits, or
// vaultReadyTimeout passes.
func (v *Vault) poll(ctx context.Context, ready func(ctx context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, vaultReadyTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, cancelCall := context.WithTimeout(ctx, 2*time.Second)
		ok := ready(callCtx)
		cancelCall()
		if ok {
			return nil
		}
		select {
		case <-v.exited:
			return fmt.Errorf("vault exited (%v); its log is %s", v.exit, v.logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// launch starts the vault program with its output going to logFile, which
// it closes.
func (v *Vault) launch(logFile *os.File, bin string, args ...string) error {
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = envWithout(os.Environ(), "VAULT_")
	cmd.SysProcAttr = ChildSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	v.cmd = cmd
	v.exited = make(chan struct{})
	go func() {
		v.exit = cmd.Wait()
		close(v.exited)
	}()
	return nil
}

// call makes one request to the Vault HTTP API. A status other than 2xx is
// an error carrying Vault's messages. out, if not nil, receives the JSON
// answer.
func (v *Vault) call(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, v.addr+path, body)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var e struct {
			Errors []string `json:"errors"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.Join(e.Errors, "; "))
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}

// Addr returns the server's address, such as http://127.0.0.1:8200, or
// https://127.0.0.1:8200 for a TLS dev server.
func (v *Vault) Addr() string { return v.addr }

// CACert returns the PEM file of the CA that signed a TLS dev server's
// certificate (for VAULT_CACERT), or "" if the server does not use TLS. The
// file is removed by Stop.
func (v *Vault) CACert() string { return v.caFile }

// RootToken returns the server's root token.
func (v *Vault) RootToken() string { return v.token }

// Pause freezes the server (SIGSTOP): it keeps its connections and its
// port but answers nothing, as a Vault stuck in a long garbage collection
// or on a stalled disk does. Resume, or Stop, wakes it.
func (v *Vault) Pause() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped || v.cmd == nil {
		return errors.New("pause vault: not running")
	}
	if err := Freeze(v.cmd.Process.Pid); err != nil {
		return fmt.Errorf("pause vault: %w", err)
	}
	v.paused = true
	return nil
}

// Freeze stops process pid (SIGSTOP) and waits until every thread of it
// has stopped (state T in /proc on Linux): the signal is delivered
// asynchronously, and a caller's next request must certainly meet a
// frozen process. SIGCONT wakes it.
func Freeze(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("SIGSTOP %d: %w", pid, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		stopped, err := allThreadsStopped(pid)
		if err != nil || stopped {
			return nil // without /proc, the signal is all there is
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped 10s after SIGSTOP", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// allThreadsStopped reports whether every thread of process pid is
// stopped, from /proc (Linux).
func allThreadsStopped(pid int) (bool, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			return false, nil // a thread that ended: look again
		}
		// The state follows the command name, in parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false, nil
		}
	}
	return true, nil
}

// Resume wakes a server frozen by Pause (SIGCONT).
func (v *Vault) Resume() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.resume()
}

func (v *Vault) resume() error {
	if !v.paused {
		return nil
	}
	if err := v.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		return fmt.Errorf("resume vault: %w", err)
	}
	v.paused = false
	return nil
}

// Stop stops the server: SIGINT, then SIGKILL if it has not exited after 10
// seconds or when ctx ends. Stopping a stopped server does nothing.
func (v *Vault) Stop(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.stopped || v.cmd == nil {
		return nil
	}
	v.stopped = true
	_, hostPort, _ := strings.Cut(v.addr, "://")
	fmt.Fprintf(v.log, "stopping Vault on %s\n", hostPort)
	_ = v.cmd.Process.Signal(syscall.SIGINT)
	_ = v.resume() // a paused server handles the signal once woken
	timer := time.NewTimer(vaultStopTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-v.exited:
	case <-timer.C:
		err = fmt.Errorf("stop vault: still running %s after SIGINT; killed it", vaultStopTimeout)
	case <-ctx.Done():
		err = fmt.Errorf("stop vault: %w; killed it", ctx.Err())
	}
	if err != nil {
		_ = v.cmd.Process.Kill()
		<-v.exited
	}
	if v.pidFile != "" {
		_ = os.Remove(v.pidFile)
	}
	if v.tempLog {
		_ = os.Remove(v.logPath)
	}
	if v.tlsDir != "" {
		_ = os.RemoveAll(v.tlsDir)
	}
	return err
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// writeFileAtomic writes a file by renaming a temporary file into place, so
// that a crash leaves the old or the new contents, never a part.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
