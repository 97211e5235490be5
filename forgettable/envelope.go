package forgettable

import (
	"bytes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/lethe-store/lethe/keystore"
)

// EnvelopePrefix starts every sealed field's value. A sealed field is a JSON
// string: EnvelopePrefix followed by the unpadded base64url encoding of
//
//	subject reference  32 bytes  (the raw bytes of keystore.Ref)
//	key version        uvarint
//	nonce              24 bytes  (synthetic: see below)
//	ciphertext         XChaCha20-Poly1305 of the field's JSON value, with its 16-byte tag
//
// The associated data binds the ciphertext to where it belongs, so that a
// ciphertext copied into another event, field or stream fails to open:
//
//	"lethe:v1" || u16 len || stream id || event id (16 bytes) ||
//	u16 len || JSON pointer || subject reference (32 bytes) || u32 key version
//
// The plaintext is the field's JSON value (a string with its quotes, a
// number, an object...), so every JSON type round-trips.
//
// The nonce is synthetic (the SIV construction): the first 24 bytes of
// HMAC-SHA256 under a nonce key derived from the data key, over the
// associated data and the plaintext. Every field gets its own nonce (the
// event id and path are in the associated data), no nonce is ever reused with
// different content, and sealing the same event again — a retried append —
// gives the same bytes, so that the event store's idempotency check works on
// sealed events. docs/envelope.md documents the format and this choice.
const EnvelopePrefix = "lethe:v1:"

// reservedPrefix may not start a plaintext string: it would be taken for a
// sealed field when read.
const reservedPrefix = "lethe:v"

// ErrTampered is returned when a sealed field does not open: its bytes were
// changed, or it was moved to another event, field or stream. It is an
// integrity failure, never a redaction.
var ErrTampered = errors.New("sealed field does not open (tampered or moved)")

// envelope is a sealed field, decoded.
type envelope struct {
	refBytes   [keystore.RefSize]byte
	keyVersion int
	nonce      [chacha20poly1305.NonceSizeX]byte
	ciphertext []byte
}

// keyID names a data key by the raw bytes of its subject reference: the
// read path looks keys up by it without formatting a Ref per field.
type keyID struct {
	ref     [keystore.RefSize]byte
	version int
}

// ref returns the envelope's subject reference.
func (e envelope) ref() keystore.Ref {
	r, _ := keystore.RefFromBytes(e.refBytes[:])
	return r
}

func (e envelope) keyID() keyID { return keyID{ref: e.refBytes, version: e.keyVersion} }

// request returns the key request of a key id.
func (k keyID) request() keyRequest {
	r, _ := keystore.RefFromBytes(k.ref[:])
	return keyRequest{ref: r, version: k.version}
}

// fieldLocation is what a sealed field is bound to.
type fieldLocation struct {
	streamID string
	eventID  [16]byte
	path     string
}

func associatedData(loc fieldLocation, refBytes []byte, version int) []byte {
	return appendAssociatedData(make([]byte, 0, 8+2+len(loc.streamID)+16+2+len(loc.path)+len(refBytes)+4), loc.streamID, loc.eventID, loc.path, refBytes, version)
}

// appendAssociatedData appends a field's associated data to ad.
func appendAssociatedData[P string | []byte](ad []byte, streamID string, eventID [16]byte, path P, refBytes []byte, version int) []byte {
	ad = append(ad, "lethe:v1"...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(len(streamID)))
	ad = append(ad, streamID...)
	ad = append(ad, eventID[:]...)
	ad = binary.BigEndian.AppendUint16(ad, uint16(min(len(path), 0xffff)))
	ad = append(ad, path...)
	ad = append(ad, refBytes...)
	ad = binary.BigEndian.AppendUint32(ad, uint32(version))
	return ad
}

// sealer seals fields under one key: the AEAD and the nonce subkey are
// derived once.
type sealer struct {
	key      keystore.Key
	aead     cipher.AEAD
	mac      hash.Hash // HMAC-SHA256 under the nonce subkey
	refBytes []byte
	buf, ad  []byte // reused: a sealer serves one goroutine
}

func newSealer(key keystore.Key) (*sealer, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	refBytes := key.Ref().Bytes()
	if refBytes == nil {
		return nil, fmt.Errorf("seal: %w", keystore.ErrInvalidRef)
	}
	material := key.Material()
	sub := hmac.New(sha256.New, material[:])
	sub.Write([]byte("lethe:v1 nonce key"))
	return &sealer{key: key, aead: aead, mac: hmac.New(sha256.New, sub.Sum(nil)), refBytes: refBytes}, nil
}

// seal encrypts a JSON value, bound to loc, and returns the envelope string.
func (s *sealer) seal(loc fieldLocation, plaintext []byte) (string, error) {
	return string(s.appendSealed(nil, loc, plaintext)), nil
}

// appendSealed appends the envelope of a JSON value, bound to loc, to dst.
func (s *sealer) appendSealed(dst []byte, loc fieldLocation, plaintext []byte) []byte {
	buf := s.buf[:0]
	buf = append(buf, s.refBytes...)
	buf = binary.AppendUvarint(buf, uint64(s.key.Version()))
	nonceAt := len(buf)
	s.ad = appendAssociatedData(s.ad[:0], loc.streamID, loc.eventID, loc.path, s.refBytes, s.key.Version())
	buf = s.appendSyntheticNonce(buf, s.ad, plaintext)
	buf = s.aead.Seal(buf, buf[nonceAt:nonceAt+chacha20poly1305.NonceSizeX], plaintext, s.ad)
	s.buf = buf
	dst = append(dst, EnvelopePrefix...)
	return base64.RawURLEncoding.AppendEncode(dst, buf)
}

// seal encrypts a JSON value under key, bound to loc.
func seal(key keystore.Key, loc fieldLocation, plaintext []byte) (string, error) {
	s, err := newSealer(key)
	if err != nil {
		return "", err
	}
	return s.seal(loc, plaintext)
}

// syntheticNonce derives a field's nonce from the associated data and the
// plaintext (SIV): HMAC-SHA256 under a subkey of the data key, so that the
// nonce reveals nothing and the AEAD key is used for nothing else.
func (s *sealer) appendSyntheticNonce(dst, ad, plaintext []byte) []byte {
	s.mac.Reset()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(ad)))
	s.mac.Write(n[:])
	s.mac.Write(ad)
	s.mac.Write(plaintext)
	at := len(dst)
	dst = s.mac.Sum(dst)
	return dst[:at+chacha20poly1305.NonceSizeX]
}

// isEnvelope reports whether a JSON string value is a sealed field.
func isEnvelope(s string) bool { return strings.HasPrefix(s, EnvelopePrefix) }

// maxKeyVersion bounds key versions read from envelopes.
const maxKeyVersion = 1 << 30

// decodeEnvelope parses a sealed field's string. It never panics, whatever
// the input (it is fuzzed).
func decodeEnvelope(s string) (envelope, error) {
	return decodeEnvelopeBytes([]byte(s))
}

// decodeEnvelopeBytes is decodeEnvelope on the raw bytes of the JSON string.
func decodeEnvelopeBytes(s []byte) (envelope, error) {
	e, _, err := decodeEnvelopeInto(nil, s)
	return e, err
}

// minEnvelopeLen is the shortest envelope, in bytes before base64: a
// reference, a one-byte version, a nonce, the tag and a one-byte plaintext.
const minEnvelopeLen = keystore.RefSize + 1 + chacha20poly1305.NonceSizeX + chacha20poly1305.Overhead + 1

// decodeEnvelopeInto is decodeEnvelopeBytes decoding into buf's storage
// (grown as needed, and returned for reuse): the envelope's ciphertext
// points into it.
func decodeEnvelopeInto(buf, s []byte) (envelope, []byte, error) {
	var e envelope
	if !bytes.HasPrefix(s, []byte(EnvelopePrefix)) {
		return e, buf, errors.New("not a sealed field")
	}
	enc := s[len(EnvelopePrefix):]
	if bytes.ContainsAny(enc, "\r\n") {
		// encoding/base64 skips line breaks; a sealed field never has
		// any, and both decoders must see the same bytes.
		return e, buf, fmt.Errorf("sealed field: bad base64: %w", ErrTampered)
	}
	if n := base64.RawURLEncoding.DecodedLen(len(enc)); cap(buf) < n {
		buf = make([]byte, n, max(n, 2*cap(buf)))
	} else {
		buf = buf[:n]
	}
	n, err := base64.RawURLEncoding.Decode(buf, enc)
	if err != nil {
		return e, buf, fmt.Errorf("sealed field: bad base64: %w", ErrTampered)
	}
	raw := buf[:n]
	if len(raw) < minEnvelopeLen {
		return e, buf, fmt.Errorf("sealed field: too short: %w", ErrTampered)
	}
	copy(e.refBytes[:], raw[:keystore.RefSize])
	raw = raw[keystore.RefSize:]
	v, n := binary.Uvarint(raw)
	if n <= 0 || v < 1 || v > maxKeyVersion {
		return e, buf, fmt.Errorf("sealed field: bad key version: %w", ErrTampered)
	}
	e.keyVersion = int(v)
	raw = raw[n:]
	if len(raw) < len(e.nonce)+chacha20poly1305.Overhead {
		return e, buf, fmt.Errorf("sealed field: too short: %w", ErrTampered)
	}
	copy(e.nonce[:], raw)
	e.ciphertext = raw[len(e.nonce):]
	return e, buf, nil
}

// headerChars is how many base64 characters of an envelope hold its
// reference and key version (48 bytes: 32 + a version of up to 5 bytes).
const headerChars = 64

// envelopeKey reads which key a sealed field needs from its first bytes
// only, without allocating. The whole envelope is checked when it is
// opened or redacted.
func envelopeKey(s []byte) (keyID, error) {
	enc, ok := bytes.CutPrefix(s, []byte(EnvelopePrefix))
	if !ok || len(enc) < headerChars || bytes.ContainsAny(enc, "\r\n") {
		e, err := decodeEnvelopeBytes(s) // the precise error
		if err == nil {
			err = fmt.Errorf("sealed field: too short: %w", ErrTampered)
		}
		return e.keyID(), err
	}
	var hdr [headerChars / 4 * 3]byte
	if _, err := base64.RawURLEncoding.Decode(hdr[:], enc[:headerChars]); err != nil {
		return keyID{}, fmt.Errorf("sealed field: bad base64: %w", ErrTampered)
	}
	var k keyID
	copy(k.ref[:], hdr[:keystore.RefSize])
	v, n := binary.Uvarint(hdr[keystore.RefSize:])
	if n <= 0 || v < 1 || v > maxKeyVersion {
		return keyID{}, fmt.Errorf("sealed field: bad key version: %w", ErrTampered)
	}
	k.version = int(v)
	return k, nil
}

// newAEAD returns the AEAD of a key. It is safe for concurrent use.
func newAEAD(key keystore.Key) (cipher.AEAD, error) {
	material := key.Material()
	aead, err := chacha20poly1305.NewX(material[:])
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", key.Ref(), err)
	}
	return aead, nil
}

// open decrypts an envelope with its key, checking it belongs at loc.
func (e envelope) open(key keystore.Key, loc fieldLocation) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return e.openInto(nil, aead, associatedData(loc, e.refBytes[:], e.keyVersion), loc.path)
}

// openInto decrypts the envelope, appending the plaintext to dst, with the
// field's associated data ad.
func (e envelope) openInto(dst []byte, aead cipher.AEAD, ad []byte, path string) ([]byte, error) {
	out, err := aead.Open(dst, e.nonce[:], e.ciphertext, ad)
	if err != nil {
		return nil, fmt.Errorf("field %s: %w", path, ErrTampered)
	}
	return out, nil
}
