package app_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// When the erasure listener loses its connection, announcements may be
// missed while it reconnects: on reconnecting it drops every cached key,
// not only the cached policies, so that no key kept from before can
// decrypt for a subject erased meanwhile.
func TestListenerReconnectDropsCachedKeys(t *testing.T) {
	t.Parallel()
	dbURL := testenv.MigratedDatabase(t)
	a := open(t, dbURL, lethesVault(t))
	hs := serve(t, a)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, adminToken, hs.Client())
	tok, err := admin.CreateToken(ctx, "writer+pii", wire.RoleWriter, wire.RolePIIReader)
	if err != nil {
		t.Fatal(err)
	}
	w := client.New(hs.URL, tok.Secret, hs.Client())
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Casey"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	// The listener is up (its first connection dropped every cache).
	listener := func() (pid int, err error) {
		err = a.Pool().QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN lethe_policies'`).Scan(&pid)
		return pid, err
	}
	var old int
	eventually(t, "the listener listens", func() error {
		var err error
		if old, err = listener(); err == nil && old == 0 {
			err = fmt.Errorf("no listener yet")
		}
		return err
	})
	if _, err := w.Append(ctx, "lead-12", wire.Exact(-1), ev); err != nil {
		t.Fatal(err)
	}
	ref, err := a.Store().SubjectRef(ctx, "casey@example.com")
	if err != nil {
		t.Fatal(err)
	}
	// A read caches the key (again, if the listener's first connection
	// dropped the caches after the append).
	eventually(t, "a read caches the key", func() error {
		if _, err := w.ReadStream(ctx, "lead-12", client.ReadOptions{}); err != nil {
			return err
		}
		if _, ok := a.Vault().CachedKey(ref, 1); !ok {
			return fmt.Errorf("not cached")
		}
		return nil
	})

	// Cut the listener's connection (the database restarted, a proxy
	// dropped it) and wait for it to listen again.

	if _, err := a.Pool().Exec(ctx, `SELECT pg_terminate_backend($1)`, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the listener listens again", func() error {
		pid, err := listener()
		if err == nil && (pid == 0 || pid == old) {
			err = fmt.Errorf("listener pid %d (old %d)", pid, old)
		}
		return err
	})
	eventually(t, "the reconnection drops the cached key", func() error {
		if _, ok := a.Vault().CachedKey(ref, 1); ok {
			return fmt.Errorf("key still cached")
		}
		return nil
	})
}
