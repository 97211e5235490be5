package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/api"
	apipg "github.com/lethe-store/lethe/api/postgres"
	"github.com/lethe-store/lethe/api/wire"
)

const auditUsage = `Usage: lethe audit export [flags] > FILE

  export   write the audit trail (format lethe-audit-export/1, docs/api.md
           "Audit export") to standard output: every append, every answer
           that carried decrypted personal data, erasure, legal hold,
           re-admission, key rotation, policy change and token change, by
           time, with no personal data. The last line (CSV: row) is a
           summary with the record count and the SHA-256 of everything
           before it; an output without it is incomplete.

Flags:
  --from TIME, --to TIME   RFC 3339; from inclusive, to exclusive
  --kind K1,K2             only these kinds (repeatable): %s
  --actor A                one actor's actions (a token id or token:ID selects both forms)
  --stream S               the appends to a stream and the reads that showed it
  --subject-ref REF        everything done to or with one subject's data: the
                           records whose subject references hold REF (64 hex
                           digits: a receipt's or access export's subjectRef)
  --format ndjson|csv      default ndjson
`

// kindList is a repeatable, comma-separated flag.
type kindList []string

func (k *kindList) String() string     { return strings.Join(*k, ",") }
func (k *kindList) Set(v string) error { *k = append(*k, v); return nil }

func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" {
		fmt.Fprintf(stderr, auditUsage, strings.Join(wire.AuditKinds, ", "))
		return errors.New("no audit command given")
	}
	var (
		c                                           config
		from, to, actor, stream, subjectRef, format string
		kinds                                       kindList
	)
	f := newFlagSet("audit export", getenv, stderr)
	c.bindDatabase(f)
	f.fs.StringVar(&from, "from", "", "the first instant, RFC 3339 (inclusive)")
	f.fs.StringVar(&to, "to", "", "the end, RFC 3339 (exclusive)")
	f.fs.Var(&kinds, "kind", "only these kinds, comma-separated or repeated: "+strings.Join(wire.AuditKinds, ", "))
	f.fs.StringVar(&actor, "actor", "", "only this actor's actions")
	f.fs.StringVar(&stream, "stream", "", "only the appends to this stream and the reads that showed it")
	f.fs.StringVar(&subjectRef, "subject-ref", "", "only the records whose subject references hold this one (64 hex digits)")
	f.fs.StringVar(&format, "format", "ndjson", "ndjson or csv")
	if err := f.parse(args[1:]); err != nil {
		return err
	}
	if f.fs.NArg() > 0 {
		return errors.New("audit export takes no operands")
	}
	q, fmtName, err := api.ParseAuditQuery(from, to, kinds, actor, stream, subjectRef, format)
	if err != nil {
		return err
	}
	return withPool(ctx, c, func(pool *pgxpool.Pool) error {
		return exportAudit(ctx, apipg.NewAuditTrail(pool), q, fmtName, stdout)
	})
}

// exportAudit writes the audit export, the same as GET /v1/audit/export.
// It writes no access log row: the export holds no decrypted personal
// data.
func exportAudit(ctx context.Context, trail api.AuditTrail, q api.AuditQuery, format api.AuditFormat, stdout io.Writer) error {
	started, err := api.WriteAuditExport(ctx, trail, q, format, stdout, nil)
	if err != nil && started {
		return fmt.Errorf("audit export failed; the output is incomplete (no summary): %w", err)
	}
	if err != nil {
		return fmt.Errorf("audit export failed before writing anything: %w", err)
	}
	return nil
}
