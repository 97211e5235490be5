package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/internal/devenv"
)

// The mount of the KV version 2 engine in every test Vault.
const vaultMount = "secret"

// VaultClient returns a client of the Vault at addr using token. It keeps
// vault/api's defaults (timeouts, two retries), as Lethe's own client does.
func VaultClient(tb testing.TB, addr, token string) *vaultapi.Client {
	tb.Helper()
	cfg := vaultapi.DefaultConfig()
	if cfg.Error != nil {
		tb.Fatalf("vault client config: %v", cfg.Error)
	}
	cfg.Address = addr
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		tb.Fatalf("vault client: %v", err)
	}
	c.SetToken(token)
	return c
}

// VaultRoot returns a client of the test Vault (see Vault) with its root
// token, for setting things up and inspecting what Lethe left behind. Code
// under test never gets it: give it LetheVault's client.
func VaultRoot(tb testing.TB) *vaultapi.Client {
	tb.Helper()
	addr, token := Vault(tb)
	return adminClient(tb, addr, token)
}

// adminClient is VaultClient without retries: set-up and clean-up calls
// should fail fast, not wait out vault/api's backoff.
func adminClient(tb testing.TB, addr, token string) *vaultapi.Client {
	tb.Helper()
	c := VaultClient(tb, addr, token)
	c.SetMaxRetries(0)
	return c
}

// LetheVault prepares the test Vault for one test as an operator would
// prepare it for Lethe, with least privilege: a random prefix under the KV
// v2 mount, a policy (named like the prefix) made of the rules of
// docs/vault-policy.hcl for that prefix, and a token bound to that policy
// alone (not even "default"). It returns a client using that token. When
// the test ends the token is revoked, the policy deleted and the secrets
// under the prefix removed.
func LetheVault(tb testing.TB) (client *vaultapi.Client, mount, prefix string) {
	tb.Helper()
	return LetheVaultAt(tb, VaultRoot(tb))
}

// LetheVaultAt is LetheVault for the Vault that root (a client with a root
// token) talks to, such as a PrivateVault.
func LetheVaultAt(tb testing.TB, root *vaultapi.Client) (client *vaultapi.Client, mount, prefix string) {
	tb.Helper()
	ctx := Context(tb)
	prefix = Name("lethe-test")
	policy := prefix
	if err := root.Sys().PutPolicyWithContext(ctx, policy, LethePolicy(tb, vaultMount, prefix)); err != nil {
		tb.Fatalf("write vault policy: %v", err)
	}
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{
		Policies:        []string{policy},
		NoDefaultPolicy: true,
		TTL:             "1h",
		DisplayName:     "lethe-test",
	})
	if err != nil || tok.Auth == nil {
		tb.Fatalf("create vault token: %v", err)
	}
	token := tok.Auth.ClientToken
	tb.Cleanup(func() {
		// Best effort: a test may have stopped or sealed its Vault.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := root.Sys().HealthWithContext(ctx); err != nil {
			return
		}
		_ = root.Auth().Token().RevokeOrphanWithContext(ctx, token)
		_ = root.Sys().DeletePolicyWithContext(ctx, policy)
		deleteTree(ctx, root, prefix)
	})
	return VaultClient(tb, root.Address(), token), vaultMount, prefix
}

// deleteTree removes every secret under dir in the KV v2 mount.
func deleteTree(ctx context.Context, root *vaultapi.Client, dir string) {
	list, err := root.Logical().ListWithContext(ctx, vaultMount+"/metadata/"+dir)
	if err != nil || list == nil {
		return
	}
	keys, _ := list.Data["keys"].([]any)
	for _, k := range keys {
		name, _ := k.(string)
		switch {
		case name == "":
		case strings.HasSuffix(name, "/"):
			deleteTree(ctx, root, dir+"/"+strings.TrimSuffix(name, "/"))
		default:
			_ = root.KVv2(vaultMount).DeleteMetadata(ctx, dir+"/"+name)
		}
	}
}

// LethePolicy returns docs/vault-policy.hcl with its rules rewritten for
// mount and prefix instead of "secret" and "lethe": the tests run Lethe with
// the policy the documentation ships.
func LethePolicy(tb testing.TB, mount, prefix string) string {
	tb.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "vault-policy.hcl"))
	if err != nil {
		tb.Fatalf("read the documented Vault policy: %v", err)
	}
	var out []string
	rules := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, `path "secret/`) {
			rest, ok := strings.CutPrefix(line, `path "secret/`)
			op, tail, _ := strings.Cut(rest, "/")
			tail, ok2 := strings.CutPrefix(tail, "lethe/")
			if !ok || !ok2 {
				tb.Fatalf("docs/vault-policy.hcl: unexpected rule %q", line)
			}
			line = fmt.Sprintf(`path "%s/%s/%s/%s`, mount, op, prefix, tail)
			rules++
		}
		out = append(out, line)
	}
	if rules != 4 {
		tb.Fatalf("docs/vault-policy.hcl has %d rules, want 4 (the reference secret, subject data, metadata, destroy)", rules)
	}
	return strings.Join(out, "\n")
}

// VaultAppRole enables the AppRole auth method at approle/ on the Vault
// that root talks to (if it is not enabled yet), creates a role whose
// tokens carry policy alone, and returns the role's id and a new secret id.
// The role is deleted when the test ends.
func VaultAppRole(tb testing.TB, root *vaultapi.Client, policy string) (roleID, secretID string) {
	tb.Helper()
	ctx := Context(tb)
	err := root.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"})
	if err != nil && !strings.Contains(err.Error(), "path is already in use") {
		tb.Fatalf("enable approle: %v", err)
	}
	role := "auth/approle/role/" + policy
	_, err = root.Logical().WriteWithContext(ctx, role, map[string]any{
		"token_policies":          []string{policy},
		"token_no_default_policy": true,
		"token_ttl":               "10m",
		"token_max_ttl":           "30m",
	})
	if err != nil {
		tb.Fatalf("create approle role: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = root.Logical().DeleteWithContext(ctx, role)
	})
	r, err := root.Logical().ReadWithContext(ctx, role+"/role-id")
	if err != nil || r == nil {
		tb.Fatalf("read approle role id: %v", err)
	}
	roleID, _ = r.Data["role_id"].(string)
	s, err := root.Logical().WriteWithContext(ctx, role+"/secret-id", nil)
	if err != nil || s == nil {
		tb.Fatalf("create approle secret id: %v", err)
	}
	secretID, _ = s.Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		tb.Fatal("approle: empty role id or secret id")
	}
	return roleID, secretID
}

// PrivateVault starts a Vault dev server for one test — one it may stop or
// seal — and stops it when the test ends. It needs the vault program
// (see devenv.VaultBinary) even when LETHE_TEST_VAULT_ADDR is set.
// VaultRootAt gives a root client of it.
func PrivateVault(tb testing.TB) *devenv.Vault {
	tb.Helper()
	root, err := devenv.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		tb.Fatalf("no vault program for a private Vault: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin})
	if err != nil {
		tb.Fatalf("start a private Vault: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := v.Stop(ctx); err != nil {
			tb.Errorf("stop the private Vault: %v", err)
		}
	})
	return v
}

// VaultRootAt returns a root client (no retries) of a Vault started by
// PrivateVault.
func VaultRootAt(tb testing.TB, v *devenv.Vault) *vaultapi.Client {
	tb.Helper()
	return adminClient(tb, v.Addr(), v.RootToken())
}
