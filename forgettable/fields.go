package forgettable

import (
	"bytes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/lethe-store/lethe/keystore"
)

// Redaction says why a personal field of an event shows null.
type Redaction struct {
	// Path is the field's JSON Pointer in the event's data.
	Path string `json:"path"`
	// Reason is ReasonForgotten or ReasonRestricted.
	Reason string `json:"reason"`
}

const (
	// ReasonForgotten: the data subject was erased; the value is gone.
	ReasonForgotten = "forgotten"
	// ReasonRestricted: the reader may not see personal data.
	ReasonRestricted = "restricted"
)

// ErrReservedValue is returned for event data holding a plaintext string
// that starts like a sealed field.
var ErrReservedValue = errors.New(`string values starting with "` + reservedPrefix + `" are reserved for sealed fields`)

// decodeJSON decodes one JSON value, keeping numbers exact.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// encodeJSON encodes v compactly, without HTML escaping.
func encodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// checkReserved refuses plaintext strings that look like sealed fields.
func checkReserved(v any, path pointer) error {
	switch c := v.(type) {
	case string:
		if len(c) >= len(reservedPrefix) && c[:len(reservedPrefix)] == reservedPrefix {
			return ErrReservedValue // no path: the data's keys may be personal data
		}
	case map[string]any:
		for k, x := range c {
			if err := checkReserved(x, append(path, k)); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range c {
			if err := checkReserved(x, append(path, fmt.Sprint(i))); err != nil {
				return err
			}
		}
	}
	return nil
}

// sealField is one field to seal and the key to seal it with.
type sealField struct {
	path pointer
	key  keystore.Key
}

// span is the byte range of a value in a JSON document.
type span struct{ start, end int }

// findFields returns, for each of paths (escaped JSON Pointers), the byte
// ranges of the values at that path in data, in one pass over its bytes:
// nil for a path that is not there, several for duplicate keys.
func findFields(data []byte, paths []string) ([][]span, error) {
	found := make([][]span, len(paths))
	want := make(map[string][]int, len(paths))
	for i, p := range paths {
		want[p] = append(want[p], i)
	}
	sc := scanner{values: func(start, end int, path []byte) error {
		for _, i := range want[string(path)] {
			found[i] = append(found[i], span{start, end})
		}
		return nil
	}}
	if err := sc.run(data); err != nil {
		return nil, err
	}
	return found, nil
}

// sealData replaces each field's value in data (a JSON object) with its
// envelope, splicing the envelopes into the bytes: the rest of the data is
// left as sent (PostgreSQL stores it as jsonb). Fields must exist and must
// not overlap (checked by the caller).
func sealData(data []byte, streamID string, eventID [16]byte, fields []sealField) ([]byte, error) {
	return sealWith(data, streamID, eventID, fields, nil)
}

// sealWith is sealData with a sealer per key cached in sealers across the
// events of an append (nil: a fresh cache).
func sealWith(data []byte, streamID string, eventID [16]byte, fields []sealField, sealers map[keyRequest]*sealer) ([]byte, error) {
	if !json.Valid(data) {
		return nil, errors.New("data: invalid JSON")
	}
	if err := checkNoReserved(data); err != nil {
		return nil, err
	}
	if sealers == nil {
		sealers = map[keyRequest]*sealer{}
	}
	paths := make([]string, len(fields))
	for i, f := range fields {
		paths[i] = f.path.String()
	}
	found, err := findFields(data, paths)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	type splice struct {
		span
		field int
	}
	var splices []splice
	for i, spans := range found {
		if len(spans) == 0 {
			return nil, fmt.Errorf("personal data path %s: no such field in the event's data", fields[i].path)
		}
		for _, sp := range spans {
			splices = append(splices, splice{sp, i})
		}
	}
	slices.SortFunc(splices, func(a, b splice) int { return a.start - b.start })
	out := make([]byte, 0, len(data)+len(splices)*(len(EnvelopePrefix)+160))
	var plain bytes.Buffer
	last := 0
	for _, sp := range splices {
		f := fields[sp.field]
		kr := keyRequest{ref: f.key.Ref(), version: f.key.Version()}
		sl := sealers[kr]
		if sl == nil {
			if sl, err = newSealer(f.key); err != nil {
				return nil, err
			}
			sealers[kr] = sl
		}
		// The plaintext is the value's compact JSON, as sent.
		plain.Reset()
		if err := json.Compact(&plain, data[sp.start:sp.end]); err != nil {
			return nil, fmt.Errorf("personal data path %s: %w", f.path, err)
		}
		out = append(out, data[last:sp.start]...)
		out = append(out, '"')
		out = sl.appendSealed(out, fieldLocation{streamID: streamID, eventID: eventID, path: paths[sp.field]}, plain.Bytes())
		out = append(out, '"')
		last = sp.end
	}
	return append(out, data[last:]...), nil
}

// checkNoReserved refuses data holding a plaintext string that starts like
// a sealed field. The bytes are checked first; data that could hide the
// prefix behind escapes is decoded.
func checkNoReserved(data []byte) error {
	if !containsReserved(data) && !bytes.Contains(data, []byte(`\u`)) {
		return nil
	}
	doc, err := decodeJSON(data)
	if err != nil {
		return nil // the event store reports invalid JSON
	}
	return checkReserved(doc, nil)
}

// keyRequest is a key an event's sealed fields need.
type keyRequest struct {
	ref     keystore.Ref
	version int
}

// fieldKeys lists the keys the sealed fields of stored data need.
func fieldKeys(data []byte) ([]keyRequest, error) {
	var out []keyRequest
	var sc scanner
	sc.visit = func(start, end int, path []byte) error {
		k, err := envelopeKey(data[start+1 : end-1])
		if err != nil {
			return fmt.Errorf("field %s: %w", path, err)
		}
		out = append(out, k.request())
		return nil
	}
	if err := sc.run(data); err != nil {
		return nil, err
	}
	return out, nil
}

// keySource answers, for one sealed field, either its key or why the
// field must be redacted (reason != ""), or an error (never a redaction).
type keySource func(ref keystore.Ref, version int) (key keystore.Key, reason string, err error)

// aeadSource is keySource with the key's AEAD ready.
type aeadSource func(k keyID) (aead cipher.AEAD, reason string, err error)

// openData replaces every sealed field of stored data with its plaintext
// value, or with null and a Redaction. Data without sealed fields is
// returned as is.
func openData(data []byte, streamID string, eventID [16]byte, keys keySource) ([]byte, []Redaction, error) {
	o := newFieldOpener(func(k keyID) (cipher.AEAD, string, error) {
		r := k.request()
		key, reason, err := keys(r.ref, r.version)
		if err != nil || reason != "" {
			return nil, reason, err
		}
		aead, err := newAEAD(key)
		return aead, "", err
	})
	return o.open(data, streamID, eventID, nil)
}

// fieldOpener opens the sealed fields of stored events: the decrypted
// values (compact JSON) are spliced in place of the envelopes, decrypted
// straight into the output. It reuses its buffers from one event to the
// next, so it allocates nothing per field; one per goroutine.
type fieldOpener struct {
	sc    scanner
	aeads aeadSource
	raw   []byte // decoded envelope
	ad    []byte // associated data

	// The event being opened.
	data     []byte
	streamID string
	eventID  [16]byte
	out      []byte
	last     int // end of the data copied to out
	redacted []Redaction
	// deferred: a field's key was not at hand (errDeferred). The scan goes
	// on, so that the key source learns every key the event needs.
	deferred error
}

func newFieldOpener(aeads aeadSource) *fieldOpener {
	o := &fieldOpener{aeads: aeads}
	o.sc.visit = o.field
	return o
}

// open returns data with its sealed fields opened or redacted, appended to
// dst, which should have room for len(data) bytes (opened data is never
// longer). Data without sealed fields is returned as is.
func (o *fieldOpener) open(data []byte, streamID string, eventID [16]byte, dst []byte) ([]byte, []Redaction, error) {
	if !bytes.Contains(data, []byte(EnvelopePrefix)) {
		return data, nil, nil
	}
	o.data, o.streamID, o.eventID, o.out, o.last, o.redacted, o.deferred = data, streamID, eventID, dst, 0, nil, nil
	defer func() { o.data, o.out, o.redacted, o.deferred = nil, nil, nil, nil }()
	if err := o.sc.run(data); err != nil {
		return nil, nil, err
	}
	if o.deferred != nil {
		return nil, nil, o.deferred
	}
	out := append(o.out, data[o.last:]...)
	redacted := o.redacted
	if len(redacted) > 1 {
		slices.SortFunc(redacted, func(a, b Redaction) int { return strings.Compare(a.Path, b.Path) })
	}
	return out, redacted, nil
}

// field opens one sealed field (the scanner's visit).
func (o *fieldOpener) field(start, end int, path []byte) error {
	env, raw, err := decodeEnvelopeInto(o.raw, o.data[start+1:end-1])
	o.raw = raw
	if err != nil {
		return fmt.Errorf("field %s: %w", path, err)
	}
	aead, reason, err := o.aeads(env.keyID())
	if errors.Is(err, errDeferred) {
		o.deferred = err
		return nil
	}
	if err != nil {
		return err
	}
	if o.deferred != nil {
		return nil // the event is opened again once its keys are fetched
	}
	o.out = append(o.out, o.data[o.last:start]...)
	o.last = end
	if reason != "" {
		o.out = append(o.out, "null"...)
		o.redacted = append(o.redacted, Redaction{Path: string(path), Reason: reason})
		return nil
	}
	o.ad = appendAssociatedData(o.ad[:0], o.streamID, o.eventID, path, env.refBytes[:], env.keyVersion)
	// The AEAD authenticates the plaintext: the sealer's compact JSON.
	if o.out, err = aead.Open(o.out, env.nonce[:], env.ciphertext, o.ad); err != nil {
		return fmt.Errorf("field %s: %w", path, ErrTampered)
	}
	return nil
}

// containsReserved is a fast check before decoding: could data hold a
// string starting with the reserved prefix?
func containsReserved(data []byte) bool { return bytes.Contains(data, []byte(reservedPrefix)) }
