package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection/postgres"
)

// A projection waiting on a stalled Vault holds no transaction id: the
// global log's horizon is the oldest running transaction, so a batch that
// kept one open across key fetches would stall every $all reader and
// subscriber, readers of data without any personal field included.
func TestStalledVaultDoesNotStallTheLog(t *testing.T) {
	t.Parallel()
	v := testenv.PrivateVault(t)
	c, mount, prefix := testenv.LetheVaultAt(t, testenv.VaultRootAt(t, v))
	dbURL := testenv.MigratedDatabase(t)
	a := open(t, dbURL, app.VaultConfig{Client: c, Mount: mount, Prefix: prefix})
	// Served without Run at first: the projections start once Vault is
	// frozen.
	hs := httptest.NewServer(a.Handler())
	t.Cleanup(hs.Close)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, adminToken, hs.Client())
	writerTok, err := admin.CreateToken(ctx, "writer", wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	readerTok, err := admin.CreateToken(ctx, "reader", wire.RoleReader)
	if err != nil {
		t.Fatal(err)
	}
	writer := client.New(hs.URL, writerTok.Secret, hs.Client())
	reader := client.New(hs.URL, readerTok.Secret, hs.Client())
	lead := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Casey"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	res, err := writer.Append(ctx, "lead-1", wire.Exact(-1), lead)
	if err != nil {
		t.Fatal(err)
	}
	leadAt := res.LastPosition

	// Vault freezes; the lookup projection (personal access) must fetch
	// casey's key to apply the lead, and waits.
	a.Vault().InvalidateAll()
	if err := v.Pause(); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	running := make(chan struct{})
	go func() { defer close(running); a.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-running })
	checkpoint := func(name string) (pos int64) {
		if err := a.Pool().QueryRow(ctx, `SELECT position FROM projection_checkpoints WHERE name = $1`, name).Scan(&pos); err != nil {
			return -1
		}
		return pos
	}
	// The analysis model needs no key: once it has passed the lead, the
	// runner is running and the lookup's batch (started with it) waits on
	// Vault.
	eventually(t, "the analysis model passes the lead", func() error {
		if at := checkpoint(postgres.AnalyticsName); at < leadAt {
			return fmt.Errorf("analytics at %d, lead at %d", at, leadAt)
		}
		return nil
	})
	time.Sleep(time.Second)

	// An order, without personal data, reaches a reader of orders at once,
	// by a page of the log and by a subscription.
	sub, err := reader.SubscribeAll(ctx, 0, "", nil, []string{"order"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	order := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "order-placed", Data: json.RawMessage(`{"total":12}`)}
	if _, err := writer.Append(ctx, "order-7", wire.Exact(-1), order); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		for {
			ev, err := sub.Next()
			if err != nil {
				got <- err
				return
			}
			if ev.Kind == "" && ev.Event.ID == order.ID {
				got <- nil
				return
			}
		}
	}()
	deadline := 20 * time.Second
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("subscription to orders: %v", err)
		}
	case <-time.After(deadline):
		t.Fatalf("a subscriber of orders did not get the order within %s while Vault was frozen (lookup at %d, lead at %d)",
			deadline, checkpoint(postgres.LookupName), leadAt)
	}
	page, err := reader.ReadAll(ctx, client.LogOptions{Categories: []string{"order"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 1 || page.Events[0].ID != order.ID {
		t.Fatalf("a page of orders while Vault was frozen: %+v", page.Events)
	}
	// Vault was frozen throughout: the lookup has not applied the lead.
	if at := checkpoint(postgres.LookupName); at >= leadAt {
		t.Fatalf("the lookup passed the lead (%d >= %d): Vault was not frozen", at, leadAt)
	}

	// Vault wakes: the lookup applies the lead.
	if err := v.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lookup applies the lead once Vault is back", func() error {
		if at := checkpoint(postgres.LookupName); at < leadAt {
			return fmt.Errorf("lookup at %d, lead at %d", at, leadAt)
		}
		return nil
	})
}
