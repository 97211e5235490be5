package postgres

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/projection"
)

// AnalyticsName is the built-in analysis model's projection name.
const AnalyticsName = "analytics"

// Analytics is the built-in analysis model: event counts per stream
// category, event type and day (the day the event was recorded, UTC). It
// holds no personal data: it never sees any (restricted access) and keeps
// counts only.
func Analytics() Projection {
	return Projection{
		Name:     AnalyticsName,
		Access:   forgettable.Restricted,
		DataFree: true,
		// Its table comes with the migrations (007).
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM read_analytics`)
			return err
		},
		// One statement per batch: the counts are added up in Go, by
		// day number (cheaper than formatting a date per event).
		ApplyBatch: func(ctx context.Context, tx pgx.Tx, events []forgettable.RecordedEvent) error {
			type key struct {
				category, typ string
				day           int64 // days since 1970-01-01, UTC
			}
			counts := map[key]int64{}
			var keys []key
			for i := range events {
				e := &events[i]
				k := key{eventstore.Category(e.StreamID), e.Type, unixDay(e.RecordedAt)}
				n, ok := counts[k]
				if !ok {
					keys = append(keys, k)
				}
				counts[k] = n + 1
			}
			cats, days, types := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
			ns := make([]int64, len(keys))
			for i, k := range keys {
				cats[i], days[i], types[i], ns[i] = k.category, time.Unix(k.day*86400, 0).UTC().Format(time.DateOnly), k.typ, counts[k]
			}
			_, err := tx.Exec(ctx, `INSERT INTO read_analytics (category, day, event_type, count)
				SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::bigint[])
				ON CONFLICT (category, day, event_type) DO UPDATE SET count = read_analytics.count + EXCLUDED.count`, cats, days, types, ns)
			return err
		},
	}
}

// unixDay is t's day (UTC) as a count of days since 1970-01-01.
func unixDay(t time.Time) int64 {
	s := t.Unix()
	d := s / 86400
	if s%86400 < 0 {
		d-- // floor, for times before 1970
	}
	return d
}

// AnalyticsOf reads the analysis model of a category: counts per day, and
// totals per event type.
func AnalyticsOf(ctx context.Context, pool *pgxpool.Pool, category string) (days []projection.DayCounts, totals map[string]int64, err error) {
	rows, err := pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), event_type, count FROM read_analytics WHERE category = $1 ORDER BY day, event_type`, category)
	if err != nil {
		return nil, nil, fmt.Errorf("analytics: %w", err)
	}
	defer rows.Close()
	totals = map[string]int64{}
	for rows.Next() {
		var day, typ string
		var n int64
		if err := rows.Scan(&day, &typ, &n); err != nil {
			return nil, nil, err
		}
		if len(days) == 0 || days[len(days)-1].Day != day {
			days = append(days, projection.DayCounts{Day: day, Counts: map[string]int64{}})
		}
		days[len(days)-1].Counts[typ] = n
		totals[typ] += n
	}
	if days == nil {
		days = []projection.DayCounts{}
	}
	return days, totals, rows.Err()
}

// LookupName is the built-in lookup index's projection name.
const LookupName = "lookup"

// Blinder gives the key of the lookup index's blind indexes: a key the
// database never sees. keystore/vault implements it (a key derived from
// the secret it holds in Vault; no subject reference the API shows can
// equal it or a MAC under it).
type Blinder interface {
	DerivedKey(ctx context.Context, purpose string) ([]byte, error)
}

// lookupPurpose names the lookup index's key.
const lookupPurpose = "lookup index v1"

// BlindIndex is the lookup key of a value of a field in a category:
// HMAC-SHA256, under the lookup index's key, of the three,
// length-prefixed.
func BlindIndex(ctx context.Context, b Blinder, category, field, value string) (string, error) {
	key, err := b.DerivedKey(ctx, lookupPurpose)
	if err != nil {
		return "", err
	}
	return blindIndex(key, category, field, value), nil
}

func blindIndex(key []byte, category, field, value string) string {
	return newBlinder(key).index(category, field, value)
}

// blinder computes blind indexes under one key, reusing its MAC (a batch
// computes thousands).
type blinder struct {
	mac hash.Hash
	sum []byte
}

func newBlinder(key []byte) *blinder {
	return &blinder{mac: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

func (b *blinder) index(category, field, value string) string {
	b.mac.Reset()
	var n [8]byte
	for _, part := range []string{category, field, value} {
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		b.mac.Write(n[:])
		io.WriteString(b.mac, part)
	}
	b.sum = b.mac.Sum(b.sum[:0])
	return hex.EncodeToString(b.sum)
}

// Lookup is the built-in lookup index: which streams had, at any version,
// a given value in a given field. It sees personal data (to index it) but
// stores only keyed blind indexes (HMAC under the secret in Vault, not in
// the database), and forgets every entry derived from an erased subject's
// events.
func Lookup(b Blinder) Projection {
	return Projection{
		Name:   LookupName,
		Access: forgettable.Personal,
		// Its table comes with the migrations (007).
		Reset: func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `DELETE FROM read_lookup`)
			return err
		},
		// One statement per batch.
		ApplyBatch: func(ctx context.Context, tx pgx.Tx, events []forgettable.RecordedEvent) error {
			key, err := b.DerivedKey(ctx, lookupPurpose)
			if err != nil {
				return err
			}
			bl := newBlinder(key)
			// About six leaves an event: sized once, not grown.
			blinds, streams, refs := make([]string, 0, 6*len(events)), make([]string, 0, 6*len(events)), make([]string, 0, 6*len(events))
			for _, e := range events {
				category := eventstore.Category(e.StreamID)
				values, err := leafValues(e.Data)
				if err != nil {
					return err
				}
				r := slices.Clone(e.SubjectRefs)
				slices.Sort(r)
				joined := strings.Join(r, ",")
				for _, v := range values {
					blinds, streams, refs = append(blinds, bl.index(category, v.path, v.value)), append(streams, e.StreamID), append(refs, joined)
				}
			}
			_, err = tx.Exec(ctx, `INSERT INTO read_lookup (blind, stream_id, subject_refs)
				SELECT blind, stream, coalesce(string_to_array(nullif(refs, ''), ','), '{}')
				FROM unnest($1::text[], $2::text[], $3::text[]) AS t(blind, stream, refs)
				ON CONFLICT DO NOTHING`, blinds, streams, refs)
			return err
		},
		// Every entry derived from an event that carried the subject's
		// data goes: no value of theirs can find the stream any more.
		Forget: func(ctx context.Context, tx pgx.Tx, subjectRef string) error {
			_, err := tx.Exec(ctx, `DELETE FROM read_lookup WHERE subject_refs @> ARRAY[$1::text]`, subjectRef)
			return err
		},
	}
}

// LookupStreams returns the streams of a category that had value in field
// (a JSON Pointer) at any version, sorted.
func LookupStreams(ctx context.Context, pool *pgxpool.Pool, b Blinder, category, field, value string) ([]string, error) {
	streams, _, err := LookupWithSubjects(ctx, pool, b, category, field, value)
	return streams, err
}

// LookupWithSubjects is LookupStreams with the references of the subjects whose
// events the matching entries came from: what a lookup discloses, for the
// access log.
func LookupWithSubjects(ctx context.Context, pool *pgxpool.Pool, b Blinder, category, field, value string) (streams, subjectRefs []string, err error) {
	blind, err := BlindIndex(ctx, b, category, field, value)
	if err != nil {
		return nil, nil, err
	}
	rows, err := pool.Query(ctx, `SELECT stream_id, subject_refs FROM read_lookup WHERE blind = $1`, blind)
	if err != nil {
		return nil, nil, fmt.Errorf("lookup: %w", err)
	}
	defer rows.Close()
	streams, subjectRefs = []string{}, []string{}
	for rows.Next() {
		var stream string
		var refs []string
		if err := rows.Scan(&stream, &refs); err != nil {
			return nil, nil, fmt.Errorf("lookup: %w", err)
		}
		if !slices.Contains(streams, stream) {
			streams = append(streams, stream)
		}
		for _, r := range refs {
			if !slices.Contains(subjectRefs, r) {
				subjectRefs = append(subjectRefs, r)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("lookup: %w", err)
	}
	slices.Sort(streams)
	slices.Sort(subjectRefs)
	return streams, subjectRefs, nil
}

type leaf struct{ path, value string }

// leafValues lists an event's leaf values (strings as their text, numbers
// and booleans as JSON), by JSON Pointer; nulls (redacted or not) are not
// indexed.
func leafValues(data []byte) ([]leaf, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, errors.New("event data is not JSON")
	}
	var out []leaf
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch c := v.(type) {
		case map[string]any:
			for k, x := range c {
				walk(path+"/"+escapeToken(k), x)
			}
		case []any:
			for i, x := range c {
				walk(fmt.Sprintf("%s/%d", path, i), x)
			}
		case string:
			out = append(out, leaf{path, c})
		case json.Number:
			out = append(out, leaf{path, c.String()})
		case bool:
			out = append(out, leaf{path, fmt.Sprint(c)})
		}
	}
	walk("", doc)
	return out, nil
}

func escapeToken(t string) string {
	b := []byte(nil)
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '~':
			b = append(b, '~', '0')
		case '/':
			b = append(b, '~', '1')
		default:
			b = append(b, t[i])
		}
	}
	return string(b)
}
