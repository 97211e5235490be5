package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	fpg "github.com/lethe-store/lethe/forgettable/postgres"
	"github.com/lethe-store/lethe/internal/app"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

const erasuresUsage = `Usage: lethe erasures COMMAND [flags]

  list      the erasure ledger as JSON, newest request first: each erasure's
            request and completion times, deadline (one month, GDPR Art.
            12(3)), whether it is overdue, actor, reason, legal basis, key
            checks and counts (the entries of GET /v1/erasures)
              [--status pending|completed|overdue]
              [--from TIME] [--to TIME]   request time, RFC 3339; from
                                          inclusive, to exclusive
  get       the full receipt of one erasure (--id ID) as JSON, for the data
            subject's file: the above, its records in $lethe-erasures, every
            stream it reached, and whether each projection is clean of it
            (the document of GET /v1/erasures/{erasureId})
  reapply   destroy, again, the Vault key of every subject in the erasure
            ledger. Run it after restoring Vault from a backup taken before
            some erasures: the backup brings their keys back.

list and get read PostgreSQL only; reapply needs Vault too.
`

func runErasures(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || !slices.Contains([]string{"list", "get", "reapply"}, args[0]) {
		fmt.Fprint(stderr, erasuresUsage)
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			return errors.New("no erasures command given")
		}
		return fmt.Errorf("unknown erasures command %q", args[0])
	}
	cmd := args[0]
	var c config
	var status, from, to, id, actor string
	f := newFlagSet("erasures "+cmd, getenv, stderr)
	c.bindDatabase(f)
	switch cmd {
	case "reapply":
		c.bindVaultAll(f)
		f.string(&actor, "actor", "LETHE_ACTOR", defaultActor(getenv), "who does this, for the audit trail")
	case "list":
		f.fs.StringVar(&status, "status", "", "only erasures that are pending, completed or overdue")
		f.fs.StringVar(&from, "from", "", "only erasures requested at or after this time (RFC 3339)")
		f.fs.StringVar(&to, "to", "", "only erasures requested before this time (RFC 3339)")
	case "get":
		f.fs.StringVar(&id, "id", "", "the erasure id (a UUID, the receipt's erasureId)")
	}
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	switch cmd {
	case "reapply":
		return withApp(ctx, c, stderr, func(a *app.App) error { return reapplyErasures(ctx, a, actor, stdout) })
	case "list":
		q, err := erasureQuery(status, from, to)
		if err != nil {
			return err
		}
		return withPool(ctx, c, func(pool *pgxpool.Pool) error { return listErasures(ctx, fpg.NewLedger(pool), q, stdout) })
	}
	if id == "" {
		return errors.New("get needs --id ID (an erasure id, e.g. from lethe erasures list)")
	}
	eid, err := eventstore.ParseEventID(id)
	if err != nil {
		return errors.New("--id: not an erasure id (want a UUID, xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
	}
	return withPool(ctx, c, func(pool *pgxpool.Pool) error {
		r, err := fullReceipt(ctx, pool, fpg.NewLedger(pool), eid)
		if errors.Is(err, forgettable.ErrErasureNotFound) {
			return fmt.Errorf("no erasure %s in the erasure ledger", eid)
		}
		if err != nil {
			return err
		}
		return printJSON(stdout, r)
	})
}

func withPool(ctx context.Context, c config, fn func(*pgxpool.Pool) error) error {
	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(pool)
}

// erasureQuery reads the filters of lethe erasures list.
func erasureQuery(status, from, to string) (forgettable.ErasureQuery, error) {
	q := forgettable.ErasureQuery{Status: forgettable.ErasureStatus(status), Limit: 1000, Now: time.Now()}
	if status != "" && !slices.Contains(forgettable.ErasureStatuses, q.Status) {
		return q, errors.New("--status: want pending, completed or overdue")
	}
	for _, b := range []struct {
		name, v string
		t       *time.Time
	}{{"from", from, &q.From}, {"to", to, &q.To}} {
		if b.v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, b.v)
		if err != nil {
			return q, fmt.Errorf("--%s: want an RFC 3339 time, e.g. 2026-11-01T00:00:00Z", b.name)
		}
		*b.t = t
	}
	return q, nil
}

// listErasures prints every erasure q selects, as GET /v1/erasures's
// pages would hold them, in one document.
func listErasures(ctx context.Context, ledger *fpg.Ledger, q forgettable.ErasureQuery, stdout io.Writer) error {
	out := wire.ErasureList{Erasures: []wire.ErasureReceipt{}}
	for {
		es, err := ledger.ListErasures(ctx, q)
		if err != nil {
			return err
		}
		for _, e := range es {
			out.Erasures = append(out.Erasures, api.ErasureSummary(e, q.Now))
		}
		if len(es) < q.Limit {
			return printJSON(stdout, out)
		}
		c := es[len(es)-1].Cursor()
		q.After = &c
	}
}

// fullReceipt is the document of GET /v1/erasures/{erasureId} with every
// stream (the API pages them), and the projections that have a checkpoint
// in this database (the API: those the answering server runs).
func fullReceipt(ctx context.Context, pool *pgxpool.Pool, ledger *fpg.Ledger, id [16]byte) (wire.ErasureReceipt, error) {
	p, err := ledger.ErasureProof(ctx, id, "", api.MaxReceiptStreams)
	if err != nil {
		return wire.ErasureReceipt{}, err
	}
	for more := p.MoreStreams; more; {
		next, err := ledger.ErasureProof(ctx, id, p.Streams[len(p.Streams)-1], api.MaxReceiptStreams)
		if err != nil {
			return wire.ErasureReceipt{}, err
		}
		// The newest entry and records: the erasure may have completed
		// meanwhile. The streams carrying the reference do not change.
		p.Erasure, p.Records = next.Erasure, next.Records
		p.Streams, more = append(p.Streams, next.Streams...), next.MoreStreams
	}
	p.MoreStreams = false
	statuses, err := projpg.Statuses(ctx, pool)
	if err != nil {
		return wire.ErasureReceipt{}, err
	}
	return api.ErasureReceipt(p, statuses, time.Now()), nil
}
