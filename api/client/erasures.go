package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/lethe-store/lethe/api/wire"
)

// ErasureListOptions select a page of GET /v1/erasures.
type ErasureListOptions struct {
	// Status is "", "pending", "completed" or "overdue".
	Status string
	// From and To bound the request time (From inclusive, To exclusive);
	// zero: no bound.
	From, To time.Time
	Limit    int
	// Cursor continues a listing: the Next of the previous page.
	Cursor string
}

// Erasures returns a page of the erasure ledger, newest request first
// (roles auditor or admin).
func (c *Client) Erasures(ctx context.Context, opts ErasureListOptions) (wire.ErasureList, error) {
	q := url.Values{}
	if opts.Status != "" {
		q.Set("status", opts.Status)
	}
	if !opts.From.IsZero() {
		q.Set("from", opts.From.Format(time.RFC3339Nano))
	}
	if !opts.To.IsZero() {
		q.Set("to", opts.To.Format(time.RFC3339Nano))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	var l wire.ErasureList
	_, err := c.do(ctx, http.MethodGet, "/v1/erasures", q, nil, &l)
	return l, err
}

// ReceiptOptions page the streams of an erasure receipt.
type ReceiptOptions struct {
	// StreamsAfter is the StreamsNext of the previous receipt.
	StreamsAfter string
	// StreamsLimit is the most streams (0: the server's default, 1,000).
	StreamsLimit int
}

func (o ReceiptOptions) query() url.Values {
	q := url.Values{}
	if o.StreamsAfter != "" {
		q.Set("streamsAfter", o.StreamsAfter)
	}
	if o.StreamsLimit > 0 {
		q.Set("streamsLimit", strconv.Itoa(o.StreamsLimit))
	}
	return q
}

// ErasureReceipt returns the full receipt of an erasure by its id (roles
// auditor or admin): problem erasure-not-found if there is none.
func (c *Client) ErasureReceipt(ctx context.Context, erasureID string, opts ReceiptOptions) (wire.ErasureReceipt, error) {
	var r wire.ErasureReceipt
	_, err := c.do(ctx, http.MethodGet, "/v1/erasures/"+url.PathEscape(erasureID), opts.query(), nil, &r)
	return r, err
}
