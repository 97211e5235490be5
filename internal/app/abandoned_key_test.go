package app_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// A key lookup that creates a subject's key is shared by every caller
// waiting for it and runs on when they all go away. If the subject is
// erased while the key is being created, the new key is destroyed by the
// lookup itself, not only by a caller that claims the creation: an erased
// reference never keeps a key, even when no request is left to check it.
func TestKeyCreatedByAnAbandonedLookupIsCheckedAgainstTheLedger(t *testing.T) {
	t.Parallel()
	v := testenv.PrivateVault(t)
	root := testenv.VaultRootAt(t, v)
	c, mount, prefix := testenv.LetheVaultAt(t, root)
	dbURL := testenv.MigratedDatabase(t)
	logs := &testenv.SyncBuffer{}
	a := openWith(t, dbURL, app.VaultConfig{Client: c, Mount: mount, Prefix: prefix}, logs)
	ctx := testenv.Context(t)
	ref, err := a.Store().SubjectRef(ctx, "casey@example.com") // the reference secret, read before Vault freezes
	if err != nil {
		t.Fatal(err)
	}

	// Vault freezes; an append's key lookup (creating casey's first key)
	// waits for it, and its caller gives up.
	if err := v.Pause(); err != nil {
		t.Fatal(err)
	}
	gaveUp, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if k, created, err := a.Vault().CurrentKey(gaveUp, ref); !errors.Is(err, keystore.ErrUnavailable) {
		_, cached := a.Vault().CachedKey(ref, 1)
		t.Fatalf("a lookup with Vault frozen answered in %v: key version %d, created %v, cached %v, err %v",
			time.Since(start), k.Version(), created, cached, err)
	}
	// Meanwhile casey is erased: the ledger records it (Vault, frozen,
	// is not asked).
	if _, _, err := a.Ledger().StartErasure(ctx, forgettable.Erasure{ID: eventstore.NewEventID(), Ref: ref, Actor: "test"}); err != nil {
		t.Fatal(err)
	}

	// Vault wakes: the abandoned lookup creates the key, then finds the
	// subject erased and destroys it.
	if err := v.Resume(); err != nil {
		t.Fatal(err)
	}
	kv := root.KVv2(mount)
	live := func() string {
		md, err := kv.GetMetadata(ctx, prefix+"/subjects/"+string(ref))
		switch {
		case errors.Is(err, vaultapi.ErrSecretNotFound):
			return "no key"
		case err != nil:
			return err.Error()
		}
		for _, ver := range md.Versions {
			if !ver.Destroyed {
				return fmt.Sprintf("key version %d of erased casey readable", ver.Version)
			}
		}
		return "versions destroyed"
	}
	eventually(t, "the lookup destroys the key it created for erased casey", func() error {
		if !strings.Contains(logs.String(), "destroyed a key created for an erased subject") {
			return fmt.Errorf("not destroyed yet (Vault: %s)", live())
		}
		return nil
	})
	if got := live(); got != "no key" {
		t.Errorf("after the lookup: %s; want no key", got)
	}
}
