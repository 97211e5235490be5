package app_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	espg "github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// refSecretExists reports whether Vault holds a reference secret under
// vc's prefix.
func refSecretExists(t *testing.T, vc app.VaultConfig) bool {
	t.Helper()
	_, err := testenv.VaultRoot(t).KVv2(vc.Mount).GetMetadata(testenv.Context(t), vc.Prefix+"/ref-secret")
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

func openErr(t *testing.T, dbURL string, vc app.VaultConfig) error {
	t.Helper()
	a, err := app.Open(testenv.Context(t), app.Config{Logger: slog.New(slog.DiscardHandler), DatabaseURL: dbURL, Vault: vc})
	if err == nil {
		a.Close()
	}
	return err
}

// The database is bound to the reference secret its references were made
// with: a server reaching another secret (another prefix) refuses to
// start, and creates none; so does one whose secret was deleted and would
// be created anew. (Before, each minted a new secret silently: appends
// through it got other references, and an erasure through the first server
// "completed" while the data stayed readable through the second.)
func TestServersRefuseAnotherReferenceSecret(t *testing.T) {
	t.Parallel()
	dbURL, first := testenv.MigratedDatabase(t), lethesVault(t)
	a := open(t, dbURL, first)
	hs := serve(t, a)
	ctx := testenv.Context(t)
	admin := client.New(hs.URL, adminToken, hs.Client())
	tok, err := admin.CreateToken(ctx, "writer", wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "lead-initialized", Data: json.RawMessage(`{"first-name":"Casey"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/first-name"}}}}
	if _, err := client.New(hs.URL, tok.Secret, hs.Client()).Append(ctx, "lead-12", wire.Exact(-1), ev); err != nil {
		t.Fatal(err)
	}

	other := lethesVault(t) // another prefix, no secret yet
	if err := openErr(t, dbURL, other); !errors.Is(err, keystore.ErrReferenceMismatch) {
		t.Fatalf("a server with another Vault prefix: %v; want it refused (ErrReferenceMismatch)", err)
	}
	if refSecretExists(t, other) {
		t.Error("the refused server created a reference secret under its prefix")
	}

	// The first prefix's secret deleted (by someone with more rights than
	// Lethe's policy gives): not created again.
	if err := testenv.VaultRoot(t).KVv2(first.Mount).DeleteMetadata(ctx, first.Prefix+"/ref-secret"); err != nil {
		t.Fatal(err)
	}
	if err := openErr(t, dbURL, first); !errors.Is(err, keystore.ErrReferenceMismatch) {
		t.Fatalf("a server whose secret was deleted: %v; want it refused", err)
	}
	if refSecretExists(t, first) {
		t.Error("the refused server created the reference secret anew")
	}
}

// A database that holds subject references but was never bound (written
// before the binding existed) gets no new secret either.
func TestUnboundDatabaseWithSubjectsGetsNoNewSecret(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	events := espg.New(testenv.Pool(t, dbURL), espg.Options{})
	t.Cleanup(events.Close)
	old := eventstore.EventData{ID: eventstore.NewEventID(), Type: "lead-initialized", Data: json.RawMessage(`{"n":1}`),
		SubjectRefs: []string{"5d2679155b44484f63196519928c36b06463dc5d2679155b44484f6319651992"}}
	if _, err := events.AppendToStream(ctx, "lead-1", eventstore.NoStream, old); err != nil {
		t.Fatal(err)
	}
	vc := lethesVault(t)
	if err := openErr(t, dbURL, vc); !errors.Is(err, keystore.ErrReferenceMismatch) {
		t.Fatalf("an unbound database with subjects and a prefix without a secret: %v; want it refused", err)
	}
	if refSecretExists(t, vc) {
		t.Error("a reference secret was created for a database that already has subjects")
	}
}
