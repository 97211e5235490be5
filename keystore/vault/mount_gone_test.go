package vault_test

import (
	"errors"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
	"github.com/lethe-store/lethe/keystore/vault"
)

// classify's doc: "only a 404 without a message becomes ErrKeyNotFound";
// a 404 "no handler for route" (the mount is gone) must be ErrUnavailable.
// vault/api's Logical().Read turns every 404 into (nil, nil), so KVv2.Get
// returns ErrSecretNotFound before classify sees a status: once checkMount
// has passed (it runs once per process), a vanished mount reads as "no
// key", and Destroy reports the key verified gone.
func TestVanishedMountIsNotKeyNotFound(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	root := testenv.VaultRoot(t)
	mount := testenv.Name("kvgone")
	if err := root.Sys().MountWithContext(ctx, mount, &vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = root.Sys().UnmountWithContext(ctx, mount) })
	s, err := vault.New(ctx, vault.Config{Client: testenv.VaultClient(t, root.Address(), root.Token()), Mount: mount, Prefix: "lethe"})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := s.SubjectRef(ctx, "ann@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CurrentKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if err := root.Sys().UnmountWithContext(ctx, mount); err != nil {
		t.Fatal(err)
	}
	s.Invalidate(ref)
	if _, err := s.Key(ctx, ref, 1); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("Key with the mount gone: err = %v, want ErrUnavailable", err)
	}
	if rep, err := s.Destroy(ctx, ref); err == nil {
		t.Errorf("Destroy with the mount gone = %+v, nil; want ErrUnavailable", rep)
	}
}
