package forgettable

import (
	"bytes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"

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
			return fmt.Errorf("%w (at %s)", ErrReservedValue, path)
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

// sealData replaces each field's value in data (a JSON object) with its
// envelope. Fields must exist and must not overlap (checked by the caller).
func sealData(data []byte, streamID string, eventID [16]byte, fields []sealField) ([]byte, error) {
	doc, err := decodeJSON(data)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	return sealDoc(doc, streamID, eventID, fields, map[keyRequest]*sealer{})
}

// sealDoc is sealData on decoded data, which it changes in place. sealers
// caches a sealer per key across the events of an append.
func sealDoc(doc any, streamID string, eventID [16]byte, fields []sealField, sealers map[keyRequest]*sealer) ([]byte, error) {
	if err := checkReserved(doc, nil); err != nil {
		return nil, err
	}
	for _, f := range fields {
		v, ok := f.path.get(doc)
		if !ok {
			return nil, fmt.Errorf("personal data path %s: no such field in the event's data", f.path)
		}
		plain, err := encodeJSON(v)
		if err != nil {
			return nil, err
		}
		kr := keyRequest{ref: f.key.Ref(), version: f.key.Version()}
		sl := sealers[kr]
		if sl == nil {
			if sl, err = newSealer(f.key); err != nil {
				return nil, err
			}
			sealers[kr] = sl
		}
		env, err := sl.seal(fieldLocation{streamID: streamID, eventID: eventID, path: f.path.String()}, plain)
		if err != nil {
			return nil, err
		}
		f.path.set(doc, env)
	}
	return encodeJSON(doc)
}

// keyRequest is a key an event's sealed fields need.
type keyRequest struct {
	ref     keystore.Ref
	version int
}

// fieldKeys lists the keys the sealed fields of stored data need.
func fieldKeys(data []byte) ([]keyRequest, error) {
	spans, err := parseSealed(data)
	if err != nil {
		return nil, err
	}
	out := make([]keyRequest, len(spans))
	for i, sp := range spans {
		out[i] = keyRequest{ref: sp.env.ref, version: sp.env.keyVersion}
	}
	return out, nil
}

// keySource answers, for one sealed field, either its key or why the
// field must be redacted (reason != ""), or an error (never a redaction).
type keySource func(ref keystore.Ref, version int) (key keystore.Key, reason string, err error)

// aeadSource is keySource with the key's AEAD ready.
type aeadSource func(ref keystore.Ref, version int) (aead cipher.AEAD, reason string, err error)

// openData replaces every sealed field of stored data with its plaintext
// value, or with null and a Redaction. Data without sealed fields is
// returned as is.
func openData(data []byte, streamID string, eventID [16]byte, keys keySource) ([]byte, []Redaction, error) {
	spans, err := parseSealed(data)
	if err != nil {
		return nil, nil, err
	}
	return openSpans(data, spans, streamID, eventID, func(ref keystore.Ref, version int) (cipher.AEAD, string, error) {
		k, reason, err := keys(ref, version)
		if err != nil || reason != "" {
			return nil, reason, err
		}
		aead, err := newAEAD(k)
		return aead, "", err
	})
}

// openSpans is openData for data already parsed: the decrypted values
// (compact JSON) are spliced in place of the envelopes, decrypted straight
// into the output.
func openSpans(data []byte, spans []sealedSpan, streamID string, eventID [16]byte, aeads aeadSource) ([]byte, []Redaction, error) {
	if len(spans) == 0 {
		return data, nil, nil
	}
	var redacted []Redaction
	out := make([]byte, 0, len(data))
	var ad []byte
	last := 0
	for _, sp := range spans {
		aead, reason, err := aeads(sp.env.ref, sp.env.keyVersion)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, data[last:sp.start]...)
		last = sp.end
		if reason != "" {
			out = append(out, "null"...)
			redacted = append(redacted, Redaction{Path: sp.path, Reason: reason})
			continue
		}
		ad = appendAssociatedData(ad[:0], fieldLocation{streamID: streamID, eventID: eventID, path: sp.path}, sp.env.refBytes[:], sp.env.keyVersion)
		// The AEAD authenticates the plaintext: the sealer's compact JSON.
		if out, err = sp.env.openInto(out, aead, ad, sp.path); err != nil {
			return nil, nil, err
		}
	}
	out = append(out, data[last:]...)
	sort.Slice(redacted, func(i, j int) bool { return redacted[i].Path < redacted[j].Path })
	return out, redacted, nil
}

// containsReserved is a fast check before decoding: could data hold a
// string starting with the reserved prefix?
func containsReserved(data []byte) bool { return bytes.Contains(data, []byte(reservedPrefix)) }
