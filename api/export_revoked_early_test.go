package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// revokeFirst revokes a token once a subject export has been let in
// (authenticated), then runs the real export: a revocation that lands
// while an export is being gathered, before its first byte is sent.
type revokeFirst struct {
	api.Subjects
	revoke func() error
}

func (x *revokeFirst) ExportSubject(ctx context.Context, subject string, record func(forgettable.Footprint) error, fn func(forgettable.RecordedEvent) error) error {
	if err := x.revoke(); err != nil {
		return err
	}
	return x.Subjects.ExportSubject(ctx, subject, record, fn)
}

// download's contract (api/export.go): once the token is revoked the
// download stops, "cut off, without its end, if it had started; 401
// unauthenticated if not" — and an export that sends nothing records no
// access. (Found by review: the token was checked only under startWriter,
// whose begin runs first, so the access log recorded an export for the
// revoked token, then the connection was aborted with nothing sent.)
func TestExportRevokedBeforeItsFirstByteIs401(t *testing.T) {
	t.Parallel()
	d := newDeployment(t)
	var revoke func() error
	hs := d.server(func(o *api.Options) {
		o.Subjects = &revokeFirst{Subjects: o.Subjects, revoke: func() error { return revoke() }}
	})
	ctx := testenv.Context(t)
	root := client.New(hs.URL, d.adminToken, hs.Client())
	tok, err := root.CreateToken(ctx, "dpo-laptop", wire.RoleAdmin, wire.RoleWriter)
	if err != nil {
		t.Fatal(err)
	}
	revoke = func() error { return root.RevokeToken(ctx, tok.ID) }
	dpo := client.New(hs.URL, tok.Secret, hs.Client())
	ev := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "note-taken", Data: json.RawMessage(`{"note":"hello"}`),
		PersonalData: []wire.PersonalData{{Subject: "casey@example.com", Paths: []string{"/note"}}}}
	if _, err := dpo.Append(ctx, "notes-1", wire.Any(), ev); err != nil {
		t.Fatal(err)
	}

	// A fresh connection: net/http's client silently retries a GET on a
	// reused connection that closes before any byte, and the retry (a new
	// request) is what answers 401.
	fresh := client.New(hs.URL, tok.Secret, &http.Client{Transport: &http.Transport{DisableKeepAlives: true}})
	var out strings.Builder
	n, err := fresh.ExportSubject(ctx, "casey@example.com", &out)
	var p *wire.Problem
	if !errors.As(err, &p) || p.Status != 401 {
		t.Errorf("an export whose token was revoked before its first byte: %d bytes, err %v; want a 401 problem", n, err)
	}
	var rows int
	if err := d.pool.QueryRow(ctx, `SELECT count(*) FROM access_log WHERE token_id = $1 AND route LIKE '%export%'`, tok.ID).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 0 {
		t.Errorf("the access log records %d subject export(s) by the revoked token, which received nothing", rows)
	}
}
