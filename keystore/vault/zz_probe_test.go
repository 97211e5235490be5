package vault_test

import (
	"context"
	"fmt"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestProbe(t *testing.T) {
	ctx := context.Background()
	root := testenv.VaultRoot(t)
	kv := root.KVv2("secret")
	p := testenv.Name("probe")
	// write to a missing mount
	_, err := root.KVv2("nosuchmount").Put(ctx, p, map[string]any{"a": "b"}, vaultapi.WithCheckAndSet(0))
	fmt.Printf("put missing mount: %#v\n", err)
	s, err := root.KVv2("nosuchmount").Get(ctx, p)
	fmt.Printf("get missing mount: %v %v\n", s, err)
	_, err = kv.Put(ctx, p, map[string]any{"a": "b"}, vaultapi.WithCheckAndSet(0))
	fmt.Println("put1", err)
	_, err = kv.Put(ctx, p, map[string]any{"a": "b"}, vaultapi.WithCheckAndSet(0))
	fmt.Printf("put2 cas0: %#v\n", err)
	fmt.Println("delete", kv.Delete(ctx, p))
	s, err = kv.Get(ctx, p)
	fmt.Printf("get soft-deleted: data=%v vm=%+v err=%v\n", s.Data, s.VersionMetadata, err)
	_, err = kv.Put(ctx, p, map[string]any{"a": "b"}, vaultapi.WithCheckAndSet(0))
	fmt.Printf("put cas0 after soft delete: %v\n", err)
	// revoked token
	tok, err := root.Auth().Token().CreateWithContext(ctx, &vaultapi.TokenCreateRequest{Policies: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.VaultClient(t, root.Address(), tok.Auth.ClientToken)
	_, err = c.KVv2("secret").Get(ctx, p)
	fmt.Printf("no-policy get: %v\n", err)
	_ = root.Auth().Token().RevokeOrphanWithContext(ctx, tok.Auth.ClientToken)
	_, err = c.KVv2("secret").Get(ctx, p)
	fmt.Printf("revoked get: %v\n", err)
	c.SetToken("garbage-token")
	_, err = c.KVv2("secret").Get(ctx, p)
	fmt.Printf("garbage get: %v\n", err)
	// login with a revoked token in the header
	err = root.Sys().EnableAuthWithOptionsWithContext(ctx, "approle", &vaultapi.EnableAuthOptions{Type: "approle"})
	fmt.Println("enable", err)
	_, err = root.Logical().Write("auth/approle/role/probe", map[string]any{"token_policies": []string{"default"}})
	fmt.Println("role", err)
	r, _ := root.Logical().Read("auth/approle/role/probe/role-id")
	sid, _ := root.Logical().Write("auth/approle/role/probe/secret-id", nil)
	c.SetToken(tok.Auth.ClientToken)
	resp, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": r.Data["role_id"], "secret_id": sid.Data["secret_id"]})
	fmt.Printf("login with revoked token in header: err=%v ok=%v\n", err, resp != nil && resp.Auth != nil)
	_, err = c.Logical().Write("auth/approle/login", map[string]any{"role_id": r.Data["role_id"], "secret_id": "nope"})
	fmt.Printf("login bad secret: %v\n", err)
	h, err := root.Sys().Health()
	fmt.Printf("health %+v %v\n", h, err)
}
