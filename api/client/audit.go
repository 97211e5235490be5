package client

import (
	"context"
	"io"
	"net/url"
	"time"
)

// AuditExportOptions select the records of an audit export. Zero fields
// select everything.
type AuditExportOptions struct {
	// From (inclusive) and To (exclusive) bound the records' time.
	From, To time.Time
	// Kinds are wire.AuditKinds values.
	Kinds  []string
	Actor  string
	Stream string
	// SubjectRef selects the records whose subjectRefs hold this subject
	// reference (64 lowercase hex digits, never a subject id).
	SubjectRef string
	// Format is "ndjson" (also when empty) or "csv".
	Format string
}

func (o AuditExportOptions) query() url.Values {
	q := url.Values{}
	if !o.From.IsZero() {
		q.Set("from", o.From.Format(time.RFC3339Nano))
	}
	if !o.To.IsZero() {
		q.Set("to", o.To.Format(time.RFC3339Nano))
	}
	for _, k := range o.Kinds {
		q.Add("kind", k)
	}
	if o.Actor != "" {
		q.Set("actor", o.Actor)
	}
	if o.Stream != "" {
		q.Set("stream", o.Stream)
	}
	if o.SubjectRef != "" {
		q.Set("subjectRef", o.SubjectRef)
	}
	if o.Format != "" {
		q.Set("format", o.Format)
	}
	return q
}

// ExportAudit writes the audit export (GET /v1/audit/export, format
// lethe-audit-export/1; roles auditor or admin) to w as it arrives, and
// returns how many bytes it wrote. An export cut off (the connection
// aborted) is an error, and what w got lacks its summary line.
func (c *Client) ExportAudit(ctx context.Context, opts AuditExportOptions, w io.Writer) (int64, error) {
	path := "/v1/audit/export"
	if q := opts.query(); len(q) > 0 {
		path += "?" + q.Encode()
	}
	return c.download(ctx, "audit export", path, w)
}
