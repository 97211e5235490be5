package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// StateLoader loads a stream's state with snapshots; *projection.Loader
// implements it.
type StateLoader interface {
	Load(ctx context.Context, streamID string, u projection.UpTo, access forgettable.Access) (projection.Loaded, error)
}

// foldPage is the page size of reads that fold a whole stream.
const foldPage = 1000

// upTo is how far a derived view reads a stream: up to a version, or up to
// a time (events recorded at or before it).
type upTo struct {
	version int64 // -1: no bound
	at      *time.Time
}

// streamUpTo reads the stream and the version or time of a state or
// history route, or answers the problem and reports false.
func (s *Server) streamUpTo(w http.ResponseWriter, r *http.Request) (string, upTo, bool) {
	streamID, ok := s.readableStream(w, r)
	if !ok {
		return "", upTo{}, false
	}
	u, err := parseUpTo(r.URL.Query())
	if err != nil {
		s.problem(w, r, http.StatusBadRequest, "invalid-query", err.Error()+".")
		return "", upTo{}, false
	}
	return streamID, u, true
}

func parseUpTo(q url.Values) (upTo, error) {
	u := upTo{version: -1}
	if err := checkQuery(q, "version", "at"); err != nil {
		return u, err
	}
	if q.Has("version") && q.Has("at") {
		return u, errors.New("give version or at, not both")
	}
	if q.Has("version") {
		v, err := queryInt(q, "version", 0, 0, eventstore.EndOfStream-1)
		if err != nil {
			return u, err
		}
		u.version = v
	}
	if q.Has("at") {
		t, err := time.Parse(time.RFC3339Nano, q.Get("at"))
		if err != nil {
			return u, errors.New("at: want an RFC 3339 time, e.g. 2020-05-20T12:00:00Z")
		}
		u.at = &t
	}
	return u, nil
}

// versionNotFound is a version asked for past a stream's last.
type versionNotFound struct{ last int64 }

func (e versionNotFound) Error() string {
	return fmt.Sprintf("The stream's last version is %d.", e.last)
}

// readUpTo reads a stream in version order up to u, page by page, handing
// each page (opened for the caller) to fn, and records the access — unless
// u asks for a version past the stream's end (versionNotFound): nothing is
// shown then, so nothing is recorded.
func (s *Server) readUpTo(r *http.Request, streamID string, u upTo, fn func([]forgettable.RecordedEvent) error) error {
	a := access(r)
	var tally accessTally
	last := int64(-1)
	for from := int64(0); ; {
		events, err := s.opts.Events.ReadStream(r.Context(), streamID, eventstore.ReadStreamOptions{From: from, Limit: foldPage, MaxBytes: s.limits.MaxPageBytes}, a)
		if err != nil {
			return err
		}
		// A page cut by size is full too: more may follow.
		full := len(events) == foldPage || cutBySize(events, s.limits.MaxPageBytes)
		n := len(events)
		if n > 0 {
			last = events[n-1].Version
			from = last + 1
		}
		cut := n
		for i, e := range events {
			if (u.version >= 0 && e.Version > u.version) || (u.at != nil && e.RecordedAt.After(*u.at)) {
				cut = i
				break
			}
		}
		events = events[:cut]
		tally.add(a, events)
		if err := fn(events); err != nil {
			return err
		}
		if cut < n || !full {
			break
		}
	}
	if u.version > last {
		return versionNotFound{last}
	}
	return s.record(r.Context(), r, &tally)
}

func (s *Server) streamState(w http.ResponseWriter, r *http.Request) {
	streamID, u, ok := s.streamUpTo(w, r)
	if !ok {
		return
	}
	var err error
	out := wire.StreamState{StreamID: streamID, Version: -1, EventTypes: []string{}, Redacted: []wire.FieldRedaction{}}
	if folder, ok := s.opts.Folders[eventstore.Category(streamID)]; ok {
		// A registered fold: its state, and every redaction it was shown.
		var state []byte
		var seen []string
		err = s.readUpTo(r, streamID, u, func(events []forgettable.RecordedEvent) error {
			if len(events) == 0 {
				return nil
			}
			next, err := folder.Fold(state, events)
			if err != nil {
				return fmt.Errorf("fold %s: %w", eventstore.Category(streamID), err)
			}
			state = next
			for _, e := range events {
				for _, red := range e.Redacted {
					out.Redacted = append(out.Redacted, wire.FieldRedaction{Path: red.Path, Reason: red.Reason, Version: e.Version})
				}
				if !slices.Contains(seen, e.Type) {
					seen = append(seen, e.Type)
				}
				at := e.RecordedAt
				out.Version, out.UpdatedAt = e.Version, &at
			}
			return nil
		})
		out.State, out.EventTypes = state, append(out.EventTypes, seen...)
	} else if s.opts.StateLoader != nil && s.opts.Upcasters == nil {
		// Snapshots: folded sealed, opened once. (Not with upcasters:
		// they reshape decrypted data, and a moved envelope would no
		// longer open.)
		var loaded projection.Loaded
		loaded, err = s.opts.StateLoader.Load(r.Context(), streamID, projection.UpTo{Version: u.version, At: u.at}, access(r))
		if err == nil && u.version > loaded.LastVersion {
			err = versionNotFound{loaded.LastVersion}
		}
		if err == nil {
			var tally accessTally
			tally.add(access(r), loaded.Opened)
			err = s.record(r.Context(), r, &tally)
		}

		setState(&out, loaded.State)
	} else {
		fold := projection.NewFold(streamID)
		err = s.readUpTo(r, streamID, u, func(events []forgettable.RecordedEvent) error {
			for _, e := range events {
				if err := fold.Apply(e); err != nil {
					return err
				}
			}
			return nil
		})
		setState(&out, fold.State())
	}
	if err != nil {
		s.fail(w, r, err) // a version past the stream's last: 404 version-not-found
		return
	}
	if len(out.State) == 0 {
		out.State = []byte("{}")
	}
	writeJSON(w, http.StatusOK, out)
}

// setState puts a generic fold's state into the answer.
func setState(out *wire.StreamState, st projection.State) {
	out.Version, out.State = st.Version, st.State
	out.EventTypes = append(out.EventTypes, st.EventTypes...)
	if st.Version >= 0 {
		at := st.UpdatedAt
		out.UpdatedAt = &at
	}
	out.Redacted = append(out.Redacted, fieldRedactions(st.Redacted)...)
}

// fieldRedactions converts a derived view's redactions.
func fieldRedactions(rs []projection.Redaction) []wire.FieldRedaction {
	out := make([]wire.FieldRedaction, len(rs))
	for i, r := range rs {
		out[i] = wire.FieldRedaction{Path: r.Path, Reason: r.Reason, Version: r.Version}
	}
	return out
}

func (s *Server) streamHistory(w http.ResponseWriter, r *http.Request) {
	streamID, u, ok := s.streamUpTo(w, r)
	if !ok {
		return
	}
	h := projection.NewHistory(streamID)
	err := s.readUpTo(r, streamID, u, func(events []forgettable.RecordedEvent) error {
		for _, e := range events {
			if err := h.Apply(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.fail(w, r, err) // a version past the stream's last: 404 version-not-found
		return
	}
	out := wire.StreamHistory{StreamID: streamID, Version: h.Version, Fields: map[string][]wire.FieldValue{}, Redacted: []wire.FieldRedaction{}}
	for path, as := range h.Fields {
		vs := make([]wire.FieldValue, len(as))
		for i, a := range as {
			vs[i] = wire.FieldValue{Value: a.Value, Version: a.Version, RecordedAt: a.RecordedAt}
		}
		out.Fields[path] = vs
	}
	out.Redacted = append(out.Redacted, fieldRedactions(h.Redacted)...)
	writeJSON(w, http.StatusOK, out)
}
