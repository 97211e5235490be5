package api_test

import (
	"encoding/json"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

// a 404 version-not-found carries no personal data, yet state and
// history decrypt the whole stream and write an access log row before they
// find the version is past the end: the audit then shows a disclosure that
// never happened (api/projections.go: record in readUpTo / after Load,
// then the u.version > last check).
func TestNoAccessRowFor404(t *testing.T) {
	ups, err := projection.NewUpcasters(projection.Upcaster{Type: "no-such-type", From: 1,
		Up: func(data json.RawMessage, red []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return data, red, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	d := newDeployment(t)
	loader := d.server()
	generic := d.server(func(o *api.Options) { o.Upcasters = ups })
	tk := d.tokens(loader)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	pii := tk.secrets[wire.RolePIIReader]
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"state, snapshot loader", func() error {
			_, err := client.New(loader.URL, pii, loader.Client()).State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(9))})
			return err
		}},
		{"state, generic fold", func() error {
			_, err := client.New(generic.URL, pii, generic.Client()).State(ctx, "lead-12", client.StateOptions{Version: ptr(int64(9))})
			return err
		}},
		{"history", func() error {
			_, err := tk.pii.History(ctx, "lead-12", client.StateOptions{Version: ptr(int64(9))})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after int
			_ = d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log`).Scan(&before)
			if err := tc.call(); problemType(err) != "version-not-found" {
				t.Fatalf("got %v, want version-not-found", err)
			}
			_ = d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log`).Scan(&after)
			if after != before {
				t.Errorf("a 404 wrote %d access log row(s); want none (nothing was shown)", after-before)
			}
		})
	}
}
