// Package client is a small typed Go client of Lethe's HTTP API v1. Errors
// the server answers are *wire.Problem (match them with errors.As, and on
// Type), or *Conflict for a version conflict.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lethe-store/lethe/api/wire"
)

// Client calls one Lethe server with one token.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL (e.g.
// "https://lethe.internal:8080") authenticating with token. A nil
// httpClient means http.DefaultClient.
func New(baseURL, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimSuffix(baseURL, "/"), token: token, http: httpClient}
}

// Conflict is a 409 version conflict, with the events appended since the
// expected version.
type Conflict struct{ wire.Conflict }

func (c *Conflict) Error() string { return c.Problem.Error() }

// Unwrap lets errors.As find the *wire.Problem.
func (c *Conflict) Unwrap() error { return &c.Problem }

// ProblemType returns the problem type name of err ("stream-not-found"...),
// or "" if err is not a problem answered by the server.
func ProblemType(err error) string {
	var p *wire.Problem
	if errors.As(err, &p) {
		return strings.TrimPrefix(p.Type, "https://lethe.dev/problems/")
	}
	return ""
}

// AppendResult is an append's result; Duplicate is true when the server
// answered 200 (a retried identical append: nothing written again).
type AppendResult struct {
	wire.AppendResult
	Duplicate bool
}

// Append appends events to a stream.
func (c *Client) Append(ctx context.Context, streamID string, expected wire.ExpectedVersion, events ...wire.NewEvent) (AppendResult, error) {
	var res AppendResult
	status, err := c.do(ctx, http.MethodPost, "/v1/streams/"+url.PathEscape(streamID)+"/events", nil,
		wire.AppendRequest{ExpectedVersion: expected, Events: events}, &res.AppendResult)
	res.Duplicate = status == http.StatusOK
	return res, err
}

// ReadOptions page through a stream. From is the first version to read
// (see Version); nil reads from the start forward, from the last event
// backward. To page, pass the page's Next as From, in the same direction.
type ReadOptions struct {
	From     *int64
	Limit    int
	Backward bool
}

// Version returns a pointer to v, for ReadOptions.From.
func Version(v int64) *int64 { return &v }

// ReadStream reads a page of a stream.
func (c *Client) ReadStream(ctx context.Context, streamID string, opts ReadOptions) (wire.StreamPage, error) {
	q := url.Values{}
	if opts.From != nil {
		q.Set("from", strconv.FormatInt(*opts.From, 10))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Backward {
		q.Set("direction", "backward")
	}
	var page wire.StreamPage
	_, err := c.do(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(streamID)+"/events", q, nil, &page)
	return page, err
}

// LogOptions select a page of the global log.
type LogOptions struct {
	FromPosition int64
	Limit        int
	Types        []string
	Categories   []string
}

// ReadAll reads a page of the global log.
func (c *Client) ReadAll(ctx context.Context, opts LogOptions) (wire.LogPage, error) {
	q := logQuery(opts.FromPosition, opts.Types, opts.Categories)
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	var page wire.LogPage
	_, err := c.do(ctx, http.MethodGet, "/v1/events", q, nil, &page)
	return page, err
}

func logQuery(from int64, types, categories []string) url.Values {
	q := url.Values{}
	if from > 0 {
		q.Set("fromPosition", strconv.FormatInt(from, 10))
	}
	for _, t := range types {
		q.Add("type", t)
	}
	for _, c := range categories {
		q.Add("category", c)
	}
	return q
}

// Erase erases a data subject and returns the receipt.
func (c *Client) Erase(ctx context.Context, subject string, req wire.EraseRequest) (wire.ErasureReceipt, error) {
	var r wire.ErasureReceipt
	_, err := c.do(ctx, http.MethodPost, "/v1/subjects/"+url.PathEscape(subject)+"/erase", nil, req, &r)
	return r, err
}

// Erasure returns a subject's erasure receipt (problem not-erased if none).
func (c *Client) Erasure(ctx context.Context, subject string) (wire.ErasureReceipt, error) {
	var r wire.ErasureReceipt
	_, err := c.do(ctx, http.MethodGet, "/v1/subjects/"+url.PathEscape(subject)+"/erasure", nil, nil, &r)
	return r, err
}

// ExportSubject writes a data subject's access export (the document of
// GET /v1/subjects/{subject}/export, format lethe-subject-export/1) to w
// as it arrives, and returns how many bytes it wrote. An erased subject
// is a *wire.Problem with status 410 (type subject-gone) and ErasureID set. A document cut off
// (the connection aborted) is an error, and what w got lacks the final
// "complete": true.
func (c *Client) ExportSubject(ctx context.Context, subject string, w io.Writer) (int64, error) {
	return c.download(ctx, "subject export", "/v1/subjects/"+url.PathEscape(subject)+"/export", w)
}

// download GETs path and copies the answer to w as it arrives (an export:
// too large to hold); an error answer is a *wire.Problem, a body cut off
// an error naming what (e.g. "audit export").
func (c *Client) download(ctx context.Context, what, path string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, readProblem(resp)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("%s cut off after %d bytes: %w", what, n, err)
	}
	return n, nil
}

// SetHold places (held) or releases a legal hold.
func (c *Client) SetHold(ctx context.Context, subject string, held bool, reason string) (wire.Hold, error) {
	method := http.MethodPut
	if !held {
		method = http.MethodDelete
	}
	var h wire.Hold
	_, err := c.do(ctx, method, "/v1/subjects/"+url.PathEscape(subject)+"/hold", nil, wire.HoldRequest{Reason: reason}, &h)
	return h, err
}

// PutPolicy creates or replaces a protection policy.
func (c *Client) PutPolicy(ctx context.Context, eventType string, paths ...string) (wire.Policy, error) {
	var p wire.Policy
	_, err := c.do(ctx, http.MethodPut, "/v1/policies/"+url.PathEscape(eventType), nil, wire.PolicyRequest{Paths: paths}, &p)
	return p, err
}

// Policy returns a protection policy.
func (c *Client) Policy(ctx context.Context, eventType string) (wire.Policy, error) {
	var p wire.Policy
	_, err := c.do(ctx, http.MethodGet, "/v1/policies/"+url.PathEscape(eventType), nil, nil, &p)
	return p, err
}

// DeletePolicy removes a protection policy.
func (c *Client) DeletePolicy(ctx context.Context, eventType string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/policies/"+url.PathEscape(eventType), nil, nil, nil)
	return err
}

// CreateToken creates a token; the result holds its secret, shown once.
func (c *Client) CreateToken(ctx context.Context, name string, roles ...string) (wire.Token, error) {
	var t wire.Token
	_, err := c.do(ctx, http.MethodPost, "/v1/tokens", nil, wire.TokenRequest{Name: name, Roles: roles}, &t)
	return t, err
}

// ListTokens lists the tokens (no secrets).
func (c *Client) ListTokens(ctx context.Context) ([]wire.Token, error) {
	var l wire.TokenList
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, nil, &l)
	return l.Tokens, err
}

// RevokeToken revokes a token.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, nil, nil)
	return err
}

// do sends a request and decodes a 2xx answer into out, or returns the
// problem.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in, out any) (int, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.send(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return resp.StatusCode, readProblem(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		// No cap: a page is as large as the server's limits allow
		// (1,000 events of up to 1 MiB by default), and decoding as it
		// arrives holds it in memory once.
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

// maxProblemBytes bounds the problem documents read, but for a version
// conflict's.
const maxProblemBytes = 1 << 20

// readProblem reads the problem document of an answer that is not 2xx. A
// 409 version conflict carries up to a page of events, as large as a
// read's page: it is decoded as it arrives, with no cap. Other problem
// documents are small: at most maxProblemBytes are read.
func readProblem(resp *http.Response) error {
	noDocument := &wire.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: "(no problem document)"}
	if resp.StatusCode == http.StatusConflict {
		var c Conflict
		if err := json.NewDecoder(resp.Body).Decode(&c.Conflict); err != nil || c.Type == "" {
			return noDocument
		}
		if strings.HasSuffix(c.Type, "/wrong-expected-version") {
			return &c
		}
		p := c.Problem
		return &p
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProblemBytes))
	if err != nil {
		return fmt.Errorf("read the %d answer: %w", resp.StatusCode, err)
	}
	p := &wire.Problem{}
	if err := json.Unmarshal(b, p); err != nil || p.Type == "" {
		return noDocument
	}
	return p
}

// SSEEvent is one Server-Sent Event of a subscription.
type SSEEvent struct {
	// Kind is "" for an event of the log, "caught-up", "shutdown" or
	// "error".
	Kind string
	// ID is the SSE id: the event's position ("" for other kinds).
	ID    string
	Event wire.Event
	// Data is the raw data line (the caught-up position, the problem...).
	Data []byte
}

// Subscription reads a subscription's events.
type Subscription struct {
	resp *http.Response
	r    *bufio.Reader
}

// SubscribeAll subscribes to the global log from a position (inclusive),
// or after lastEventID when it is not "" (resuming).
func (c *Client) SubscribeAll(ctx context.Context, fromPosition int64, lastEventID string, types, categories []string) (*Subscription, error) {
	return c.subscribe(ctx, "/v1/subscribe", logQuery(fromPosition, types, categories), lastEventID)
}

// SubscribeStream subscribes to a stream from a version, or after
// lastEventID (a position) when it is not "".
func (c *Client) SubscribeStream(ctx context.Context, streamID string, from int64, lastEventID string) (*Subscription, error) {
	q := url.Values{}
	if from > 0 {
		q.Set("from", strconv.FormatInt(from, 10))
	}
	return c.subscribe(ctx, "/v1/streams/"+url.PathEscape(streamID)+"/subscribe", q, lastEventID)
}

func (c *Client) subscribe(ctx context.Context, path string, q url.Values, lastEventID string) (*Subscription, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readProblem(resp)
	}
	return &Subscription{resp: resp, r: bufio.NewReader(resp.Body)}, nil
}

// Next returns the next event (comments and heartbeats skipped). It
// returns io.EOF when the server ends the stream.
func (s *Subscription) Next() (SSEEvent, error) {
	var ev SSEEvent
	var data [][]byte
	for {
		line, err := s.r.ReadBytes('\n')
		if err != nil {
			if err == io.EOF && len(line) == 0 {
				return ev, io.EOF
			}
			return ev, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			if len(data) == 0 && ev.Kind == "" && ev.ID == "" {
				continue // a comment-only block
			}
			ev.Data = bytes.Join(data, []byte("\n"))
			if ev.Kind == "" {
				if err := json.Unmarshal(ev.Data, &ev.Event); err != nil {
					return ev, fmt.Errorf("decode event %s: %w", ev.ID, err)
				}
			}
			return ev, nil
		case line[0] == ':':
		default:
			field, value, _ := bytes.Cut(line, []byte(":"))
			value = bytes.TrimPrefix(value, []byte(" "))
			switch string(field) {
			case "id":
				ev.ID = string(value)
			case "event":
				ev.Kind = string(value)
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Close ends the subscription.
func (s *Subscription) Close() error { return s.resp.Body.Close() }

// StateOptions bound a derived view: up to a version, or up to a time
// (at most one of them; neither: the whole stream).
type StateOptions struct {
	Version *int64
	At      *time.Time
}

func (o StateOptions) query() url.Values {
	q := url.Values{}
	if o.Version != nil {
		q.Set("version", strconv.FormatInt(*o.Version, 10))
	}
	if o.At != nil {
		q.Set("at", o.At.Format(time.RFC3339Nano))
	}
	return q
}

// State returns a stream's state folded up to a version or time.
func (c *Client) State(ctx context.Context, streamID string, opts StateOptions) (wire.StreamState, error) {
	var s wire.StreamState
	_, err := c.do(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(streamID)+"/state", opts.query(), nil, &s)
	return s, err
}

// History returns every value each field of a stream ever had.
func (c *Client) History(ctx context.Context, streamID string, opts StateOptions) (wire.StreamHistory, error) {
	var h wire.StreamHistory
	_, err := c.do(ctx, http.MethodGet, "/v1/streams/"+url.PathEscape(streamID)+"/history", opts.query(), nil, &h)
	return h, err
}

// Lookup returns the streams of a category that had value in field (a
// JSON Pointer) at any version.
func (c *Client) Lookup(ctx context.Context, category, field, value string) ([]string, error) {
	var l wire.LookupResult
	_, err := c.do(ctx, http.MethodGet, "/v1/lookup", url.Values{"category": {category}, "field": {field}, "value": {value}}, nil, &l)
	return l.Streams, err
}

// Analytics returns the analysis model of a category.
func (c *Client) Analytics(ctx context.Context, category string) (wire.Analytics, error) {
	var a wire.Analytics
	_, err := c.do(ctx, http.MethodGet, "/v1/analytics/"+url.PathEscape(category), nil, nil, &a)
	return a, err
}

// Projections returns the persisted projections' progress.
func (c *Client) Projections(ctx context.Context) ([]wire.ProjectionStatus, error) {
	var l wire.ProjectionList
	_, err := c.do(ctx, http.MethodGet, "/v1/projections", nil, nil, &l)
	return l.Projections, err
}

// RebuildProjection asks for a projection's rebuild: from scratch
// (fromPosition 0) or from a position.
func (c *Client) RebuildProjection(ctx context.Context, name string, fromPosition int64) error {
	_, err := c.do(ctx, http.MethodPost, "/v1/projections/"+url.PathEscape(name)+"/rebuild", nil, wire.RebuildRequest{FromPosition: fromPosition}, nil)
	return err
}

// send sends req with the client's token.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.http.Do(req)
}
