package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// vaultNode is one Vault server of a Raft cluster (integrated storage).
type vaultNode struct {
	name                 string
	apiPort, clusterPort int
	dir                  string
	*proc
}

func (v *vaultNode) addr() string { return fmt.Sprintf("http://127.0.0.1:%d", v.apiPort) }

// newVaultRaft prepares the nodes: each a folder with its Raft data and a
// configuration that joins the others.
func newVaultRaft(dir, bin string, ports *Ports) ([]*vaultNode, error) {
	nodes := make([]*vaultNode, len(ports.VaultAPI))
	var joins strings.Builder
	for i := range nodes {
		nodes[i] = &vaultNode{name: fmt.Sprintf("vault%d", i+1), apiPort: ports.VaultAPI[i], clusterPort: ports.VaultCluster[i]}
		fmt.Fprintf(&joins, "  retry_join {\n    leader_api_addr = %q\n  }\n", nodes[i].addr())
	}
	for _, v := range nodes {
		v.dir = filepath.Join(dir, v.name)
		if err := os.MkdirAll(filepath.Join(v.dir, "raft"), 0o700); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf(`storage "raft" {
  path    = %q
  node_id = %q
%s}
listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
api_addr      = %q
cluster_addr  = "http://127.0.0.1:%d"
disable_mlock = true
ui            = false
`, filepath.Join(v.dir, "raft"), v.name, joins.String(), v.apiPort, v.clusterPort, v.addr(), v.clusterPort)
		cfgPath := filepath.Join(v.dir, "vault.hcl")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		v.proc = newProc(v.name, filepath.Join(dir, v.name+".log"), func() *exec.Cmd {
			cmd := exec.Command(bin, "server", "-config="+cfgPath)
			cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + v.dir}
			return cmd
		})
	}
	return nodes, nil
}

// vaultCall makes one request to a Vault node's HTTP API.
func vaultCall(ctx context.Context, method, url, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil && resp.StatusCode < 300 {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, url, err)
		}
	}
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusTooManyRequests {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode, nil
}

// health is a node's /v1/sys/health status: 200 active, 429 standby,
// 503 sealed, 501 not initialised.
func (v *vaultNode) health(ctx context.Context) int {
	code, err := vaultCall(ctx, http.MethodGet, v.addr()+"/v1/sys/health?standbycode=429&sealedcode=503&uninitcode=501", "", nil, nil)
	if err != nil && code == 0 {
		return 0
	}
	return code
}

// startVaultRaft starts the nodes, initialises the cluster on its first
// start (one unseal key; key and root token saved in the state), unseals
// every node, and mounts KV version 2 at secret/.
func startVaultRaft(ctx context.Context, nodes []*vaultNode, s *State, save func() error) error {
	for _, v := range nodes {
		if err := v.start(); err != nil {
			return err
		}
	}
	first := nodes[0]
	if err := poll(ctx, 30*time.Second, func(ctx context.Context) error {
		if c := first.health(ctx); c == 0 {
			return fmt.Errorf("%s does not answer", first.name)
		}
		return nil
	}); err != nil {
		return err
	}
	fresh := s.VaultUnsealKey == ""
	if fresh {
		var init struct {
			Keys      []string `json:"keys_base64"`
			RootToken string   `json:"root_token"`
		}
		if _, err := vaultCall(ctx, http.MethodPut, first.addr()+"/v1/sys/init", "", map[string]int{"secret_shares": 1, "secret_threshold": 1}, &init); err != nil {
			return fmt.Errorf("initialise vault: %w", err)
		}
		if len(init.Keys) != 1 || init.RootToken == "" {
			return errors.New("initialise vault: no key or root token in the answer")
		}
		s.VaultUnsealKey, s.VaultRootToken = init.Keys[0], init.RootToken
		if err := save(); err != nil {
			return err
		}
		// A new cluster: the first node becomes active alone, and the
		// others join it as they are unsealed.
		if err := unseal(ctx, first, s.VaultUnsealKey); err != nil {
			return err
		}
		if err := waitActive(ctx, nodes); err != nil {
			return err
		}
	}
	// A restart: every node must be unsealed before any can be elected
	// (a leader needs a quorum of voters).
	for _, v := range nodes {
		if err := unseal(ctx, v, s.VaultUnsealKey); err != nil {
			return err
		}
	}
	if err := waitActive(ctx, nodes); err != nil {
		return err
	}
	if err := poll(ctx, 60*time.Second, func(ctx context.Context) error {
		for _, v := range nodes {
			if c := v.health(ctx); c != http.StatusOK && c != http.StatusTooManyRequests {
				return fmt.Errorf("%s: health %d", v.name, c)
			}
		}
		return nil
	}); err != nil {
		return err
	}
	return ensureKV2(ctx, nodes, s.VaultRootToken)
}

// waitActive waits until a node is active.
func waitActive(ctx context.Context, nodes []*vaultNode) error {
	return poll(ctx, 90*time.Second, func(ctx context.Context) error {
		if activeVault(ctx, nodes) == nil {
			return errors.New("no active Vault node")
		}
		return nil
	})
}

// unseal unseals a node, retrying while it is still joining.
func unseal(ctx context.Context, v *vaultNode, key string) error {
	return poll(ctx, 60*time.Second, func(ctx context.Context) error {
		var st struct {
			Sealed bool `json:"sealed"`
		}
		if _, err := vaultCall(ctx, http.MethodPut, v.addr()+"/v1/sys/unseal", "", map[string]string{"key": key}, &st); err != nil {
			return fmt.Errorf("unseal %s: %w", v.name, err)
		}
		if st.Sealed {
			return fmt.Errorf("%s still sealed", v.name)
		}
		return nil
	})
}

// ensureKV2 mounts KV version 2 at secret/ unless it is there, through
// whichever node answers (standbys forward).
func ensureKV2(ctx context.Context, nodes []*vaultNode, token string) error {
	return poll(ctx, 60*time.Second, func(ctx context.Context) error {
		var mounts map[string]json.RawMessage
		addr := nodes[0].addr()
		if _, err := vaultCall(ctx, http.MethodGet, addr+"/v1/sys/mounts", token, nil, &mounts); err != nil {
			return err
		}
		if _, ok := mounts["secret/"]; ok {
			return nil
		}
		_, err := vaultCall(ctx, http.MethodPost, addr+"/v1/sys/mounts/secret", token,
			map[string]any{"type": "kv", "options": map[string]string{"version": "2"}}, nil)
		return err
	})
}

// activeVault returns the active node, or nil.
func activeVault(ctx context.Context, nodes []*vaultNode) *vaultNode {
	for _, v := range nodes {
		if v.running() && v.health(ctx) == http.StatusOK {
			return v
		}
	}
	return nil
}

func stopVaultRaft(nodes []*vaultNode) {
	for _, v := range nodes {
		if v != nil && v.proc != nil {
			_ = v.stop(syscall.SIGTERM, 15*time.Second)
		}
	}
}
