package eventstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The hash chain (docs/architecture.md "The hash chain"). Every event of a
// stream carries a link: a SHA-256 over the previous event's link and this
// event as stored. The event's part is its content digest (ContentDigest),
// over the bytes the store keeps — ciphertext for sealed fields, never
// plaintext — so erasing a subject (deleting a key) never breaks a chain.
// The database normalises the JSON it stores (jsonb), so data and metadata
// enter the digest in a canonical form (AppendCanonicalJSON) that is the
// same for what a writer sent and for what the database gives back.

// LinkSize is the length of a link and of a content digest in bytes.
const LinkSize = sha256.Size

// ContentTag opens every content digest: it names the digest's layout, so
// that a later layout can never produce the same bytes.
const ContentTag = "lethe-event/1"

// ErrInvalidJSON is returned (wrapped) by AppendCanonicalJSON for input
// that is not one valid JSON value, or that holds a number whose exponent
// is out of range.
var ErrInvalidJSON = errors.New("invalid JSON")

// maxCanonicalDepth bounds the nesting of arrays and objects, as
// encoding/json does.
const maxCanonicalDepth = 10000

// maxCanonicalExponent bounds a canonical number's exponent. PostgreSQL's
// numeric holds far less (about ±131072 digits); the bound only keeps the
// arithmetic in range.
const maxCanonicalExponent = 1 << 50

// AppendCanonicalJSON appends the canonical form of the JSON value src to
// dst: the same bytes for every spelling of the same value that jsonb
// stores as one. The rules:
//
//   - no whitespace;
//   - object members sorted bytewise by their decoded keys; of duplicate
//     keys, the last one wins (as in jsonb);
//   - strings decoded (every escape, \u surrogate pairs included; a lone
//     surrogate is an error, as in PostgreSQL) and written back escaping
//     only '"' and '\' (as \" and \\) and bytes below 0x20 (as \u00xx,
//     lowercase); everything else as raw UTF-8, which must be valid;
//   - numbers by exact decimal value: an optional minus sign, the
//     significant digits without leading or trailing zeros, and the
//     exponent if it is not zero: 100 → 1e2, 1.50 → 15e-1, 0.000 and -0
//     → 0. No floating point is involved;
//   - true, false and null as they are.
//
// Invalid JSON is an error wrapping ErrInvalidJSON; dst is then returned
// unextended.
func AppendCanonicalJSON(dst, src []byte) ([]byte, error) {
	var c canonicalizer
	return c.append(dst, src)
}

// canonicalizer holds the buffers of AppendCanonicalJSON, reused across
// calls by a ChainHasher.
type canonicalizer struct {
	src     []byte
	i       int
	dst     []byte
	depth   int
	members []member // a stack: the members of the objects being written
	keys    []byte   // decoded keys that differ from their canonical text
	tmp     []byte   // an object's bytes while its members are reordered
}

// member is an object member written to dst: the span of `"key":value`
// and where its decoded key is.
type member struct {
	start, end       int
	keyStart, keyEnd int
	keyInKeys        bool // the decoded key is in keys, not in dst
}

func (c *canonicalizer) append(dst, src []byte) ([]byte, error) {
	c.src, c.i, c.dst, c.depth = src, 0, dst, 0
	c.members, c.keys = c.members[:0], c.keys[:0]
	err := c.document()
	out := c.dst
	c.src, c.dst = nil, nil
	if err != nil {
		return dst, err
	}
	return out, nil
}

func (c *canonicalizer) document() error {
	c.space()
	if err := c.value(); err != nil {
		return err
	}
	c.space()
	if c.i != len(c.src) {
		return c.fail("data after the value")
	}
	return nil
}

func (c *canonicalizer) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalidJSON, what, c.i)
}

func (c *canonicalizer) space() {
	for c.i < len(c.src) {
		switch c.src[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *canonicalizer) value() error {
	if c.i >= len(c.src) {
		return c.fail("unexpected end")
	}
	switch b := c.src[c.i]; {
	case b == '{':
		return c.object()
	case b == '[':
		return c.array()
	case b == '"':
		_, err := c.string()
		return err
	case b == 't':
		return c.literal("true")
	case b == 'f':
		return c.literal("false")
	case b == 'n':
		return c.literal("null")
	case b == '-' || b >= '0' && b <= '9':
		return c.number()
	}
	return c.fail("unexpected character")
}

func (c *canonicalizer) literal(lit string) error {
	if len(c.src)-c.i < len(lit) || string(c.src[c.i:c.i+len(lit)]) != lit {
		return c.fail("invalid literal")
	}
	c.i += len(lit)
	c.dst = append(c.dst, lit...)
	return nil
}

func (c *canonicalizer) array() error {
	if c.depth++; c.depth > maxCanonicalDepth {
		return c.fail("nested too deeply")
	}
	c.i++
	c.dst = append(c.dst, '[')
	c.space()
	if c.i < len(c.src) && c.src[c.i] == ']' {
		c.i++
		c.dst = append(c.dst, ']')
		c.depth--
		return nil
	}
	for {
		c.space()
		if err := c.value(); err != nil {
			return err
		}
		c.space()
		if c.i >= len(c.src) {
			return c.fail("unexpected end")
		}
		switch c.src[c.i] {
		case ',':
			c.i++
			c.dst = append(c.dst, ',')
			continue
		case ']':
			c.i++
			c.dst = append(c.dst, ']')
			c.depth--
			return nil
		}
		return c.fail("want , or ]")
	}
}

func (c *canonicalizer) object() error {
	if c.depth++; c.depth > maxCanonicalDepth {
		return c.fail("nested too deeply")
	}
	c.i++
	objStart := len(c.dst)
	c.dst = append(c.dst, '{')
	base, keysBase := len(c.members), len(c.keys)
	c.space()
	if c.i < len(c.src) && c.src[c.i] == '}' {
		c.i++
		c.dst = append(c.dst, '}')
		c.depth--
		return nil
	}
	for {
		c.space()
		if c.i >= len(c.src) || c.src[c.i] != '"' {
			return c.fail("want a string key")
		}
		m := member{start: len(c.dst)}
		escaped, err := c.string()
		if err != nil {
			return err
		}
		m.keyStart, m.keyEnd = m.start+1, len(c.dst)-1
		if escaped {
			m.keyStart, m.keyEnd, m.keyInKeys = len(c.keys), 0, true
			c.keys = unescapeCanonical(c.keys, c.dst[m.start+1:len(c.dst)-1])
			m.keyEnd = len(c.keys)
		}
		c.space()
		if c.i >= len(c.src) || c.src[c.i] != ':' {
			return c.fail("want :")
		}
		c.i++
		c.dst = append(c.dst, ':')
		c.space()
		if err := c.value(); err != nil {
			return err
		}
		m.end = len(c.dst)
		c.members = append(c.members, m)
		c.space()
		if c.i >= len(c.src) {
			return c.fail("unexpected end")
		}
		if c.src[c.i] == ',' {
			c.i++
			c.dst = append(c.dst, ',')
			continue
		}
		if c.src[c.i] != '}' {
			return c.fail("want , or }")
		}
		c.i++
		break
	}
	ms := c.members[base:]
	sorted := true
	for k := 1; k < len(ms) && sorted; k++ {
		sorted = c.compareKeys(ms[k-1], ms[k]) < 0
	}
	if sorted { // the common case: written as they came
		c.dst = append(c.dst, '}')
	} else {
		// Stable: of equal keys the last one written stays last, and wins.
		slices.SortStableFunc(ms, c.compareKeys)
		for k := 0; k+1 < len(ms); k++ {
			if c.compareKeys(ms[k], ms[k+1]) == 0 {
				ms[k].start = -1 // a later duplicate wins
			}
		}
		c.tmp = append(c.tmp[:0], c.dst[objStart:]...)
		c.dst = c.dst[:objStart+1]
		first := true
		for _, m := range ms {
			if m.start < 0 {
				continue
			}
			if !first {
				c.dst = append(c.dst, ',')
			}
			first = false
			c.dst = append(c.dst, c.tmp[m.start-objStart:m.end-objStart]...)
		}
		c.dst = append(c.dst, '}')
	}
	c.members, c.keys = c.members[:base], c.keys[:keysBase]
	c.depth--
	return nil
}

func (c *canonicalizer) key(m member) []byte {
	if m.keyInKeys {
		return c.keys[m.keyStart:m.keyEnd]
	}
	return c.dst[m.keyStart:m.keyEnd]
}

func (c *canonicalizer) compareKeys(a, b member) int {
	return bytes.Compare(c.key(a), c.key(b))
}

// unescapeCanonical appends the decoded bytes of a canonical string's
// text (escapes \" \\ and \u00xx only) to dst.
func unescapeCanonical(dst, s []byte) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			dst = append(dst, s[i])
			continue
		}
		if s[i+1] == 'u' { // \u00xx
			dst = append(dst, unhex(s[i+4])<<4|unhex(s[i+5]))
			i += 5
			continue
		}
		dst = append(dst, s[i+1])
		i++
	}
	return dst
}

func unhex(b byte) byte {
	switch {
	case b >= '0' && b <= '9':
		return b - '0'
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10
	}
	return 0xff
}

const hexDigits = "0123456789abcdef"

// string writes the canonical form of the string at c.i and reports
// whether that form holds an escape.
func (c *canonicalizer) string() (escaped bool, err error) {
	c.i++
	c.dst = append(c.dst, '"')
	for {
		j := c.i
		for j < len(c.src) {
			if b := c.src[j]; b == '"' || b == '\\' || b < 0x20 || b >= utf8.RuneSelf {
				break
			}
			j++
		}
		c.dst = append(c.dst, c.src[c.i:j]...)
		c.i = j
		if j >= len(c.src) {
			return escaped, c.fail("unterminated string")
		}
		switch b := c.src[j]; {
		case b == '"':
			c.i++
			c.dst = append(c.dst, '"')
			return escaped, nil
		case b < 0x20:
			return escaped, c.fail("control character in string")
		case b >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(c.src[j:])
			if r == utf8.RuneError && size <= 1 {
				return escaped, c.fail("invalid UTF-8")
			}
			c.dst = append(c.dst, c.src[j:j+size]...)
			c.i += size
		default: // a backslash
			r, err := c.escape()
			if err != nil {
				return escaped, err
			}
			escaped = c.writeRune(r) || escaped
		}
	}
}

// escape decodes the escape at c.i.
func (c *canonicalizer) escape() (rune, error) {
	if c.i+1 >= len(c.src) {
		return 0, c.fail("unterminated escape")
	}
	e := c.src[c.i+1]
	c.i += 2
	switch e {
	case '"', '\\', '/':
		return rune(e), nil
	case 'b':
		return '\b', nil
	case 'f':
		return '\f', nil
	case 'n':
		return '\n', nil
	case 'r':
		return '\r', nil
	case 't':
		return '\t', nil
	case 'u':
		r, ok := c.hex4()
		if !ok {
			return 0, c.fail("invalid \\u escape")
		}
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return 0, c.fail("low surrogate without a high one")
		case r >= 0xd800 && r <= 0xdbff:
			if c.i+1 >= len(c.src) || c.src[c.i] != '\\' || c.src[c.i+1] != 'u' {
				return 0, c.fail("high surrogate without a low one")
			}
			c.i += 2
			lo, ok := c.hex4()
			if !ok || lo < 0xdc00 || lo > 0xdfff {
				return 0, c.fail("high surrogate without a low one")
			}
			return 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00), nil
		}
		return r, nil
	}
	return 0, c.fail("invalid escape")
}

func (c *canonicalizer) hex4() (rune, bool) {
	if len(c.src)-c.i < 4 {
		return 0, false
	}
	var r rune
	for _, b := range c.src[c.i : c.i+4] {
		d := unhex(b)
		if d == 0xff {
			return 0, false
		}
		r = r<<4 | rune(d)
	}
	c.i += 4
	return r, true
}

// writeRune writes a decoded character and reports whether it needed an
// escape.
func (c *canonicalizer) writeRune(r rune) bool {
	switch {
	case r == '"' || r == '\\':
		c.dst = append(c.dst, '\\', byte(r))
		return true
	case r < 0x20:
		c.dst = append(c.dst, '\\', 'u', '0', '0', hexDigits[r>>4], hexDigits[r&0xf])
		return true
	}
	c.dst = utf8.AppendRune(c.dst, r)
	return false
}

// number writes the canonical form of the number at c.i (see
// AppendCanonicalJSON).
func (c *canonicalizer) number() error {
	s, i := c.src, c.i
	neg := s[i] == '-'
	if neg {
		i++
	}
	intStart := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		c.i = i
		return c.fail("invalid number")
	}
	intEnd := i
	fracStart, fracEnd := i, i
	if i < len(s) && s[i] == '.' {
		i++
		fracStart = i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		fracEnd = i
		if fracEnd == fracStart {
			c.i = i
			return c.fail("invalid number")
		}
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		expStart := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if exp = exp*10 + int64(s[i]-'0'); exp > maxCanonicalExponent {
				c.i = i
				return c.fail("number exponent out of range")
			}
			i++
		}
		if i == expStart {
			c.i = i
			return c.fail("invalid number")
		}
		if expNeg {
			exp = -exp
		}
	}
	c.i = i
	// The digits are int then frac, read as one string of n digits.
	nInt, nFrac := intEnd-intStart, fracEnd-fracStart
	n := nInt + nFrac
	digit := func(k int) byte {
		if k < nInt {
			return s[intStart+k]
		}
		return s[fracStart+k-nInt]
	}
	first := 0
	for first < n && digit(first) == '0' {
		first++
	}
	if first == n {
		c.dst = append(c.dst, '0')
		return nil
	}
	last := n - 1
	for digit(last) == '0' {
		last--
	}
	e := exp - int64(nFrac) + int64(n-1-last)
	if e > maxCanonicalExponent || e < -maxCanonicalExponent {
		return c.fail("number exponent out of range")
	}
	if neg {
		c.dst = append(c.dst, '-')
	}
	if first < nInt {
		c.dst = append(c.dst, s[intStart+first:intStart+min(last+1, nInt)]...)
	}
	if last >= nInt {
		c.dst = append(c.dst, s[fracStart+max(first, nInt)-nInt:fracStart+last+1-nInt]...)
	}
	if e != 0 {
		c.dst = append(c.dst, 'e')
		c.dst = strconv.AppendInt(c.dst, e, 10)
	}
	return nil
}

// A ChainHasher computes content digests (see ContentDigest), reusing its
// buffers from one call to the next. The zero value is ready to use; it
// is not safe for concurrent use.
type ChainHasher struct {
	c   canonicalizer
	buf []byte
}

// ContentDigest returns an event's content digest: the SHA-256 over its
// fields as stored, each written as a 4-byte big-endian length and the
// bytes: ContentTag, the stream id, the event id (16 bytes), the type, the
// canonical data, the canonical metadata ({} when empty), the subject
// references joined with ",", the actor. It fails (ErrInvalidJSON) only on
// data or metadata that is not valid JSON.
func ContentDigest(streamID string, id EventID, eventType string, data, metadata []byte, subjectRefs []string, actor string) ([LinkSize]byte, error) {
	var h ChainHasher
	return h.ContentDigest(streamID, id, eventType, data, metadata, subjectRefs, actor)
}

// ContentDigest is the package function ContentDigest with h's buffers.
func (h *ChainHasher) ContentDigest(streamID string, id EventID, eventType string, data, metadata []byte, subjectRefs []string, actor string) ([LinkSize]byte, error) {
	b := h.buf[:0]
	b = appendField(b, ContentTag)
	b = appendField(b, streamID)
	b = appendField(b, string(id[:]))
	b = appendField(b, eventType)
	var err error
	if b, err = h.appendJSON(b, data); err != nil {
		return [LinkSize]byte{}, fmt.Errorf("data: %w", err)
	}
	if len(metadata) == 0 {
		metadata = emptyObject
	}
	if b, err = h.appendJSON(b, metadata); err != nil {
		return [LinkSize]byte{}, fmt.Errorf("metadata: %w", err)
	}
	n := max(0, len(subjectRefs)-1)
	for _, r := range subjectRefs {
		n += len(r)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	for i, r := range subjectRefs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = appendField(b, actor)
	h.buf = b
	return sha256.Sum256(b), nil
}

var emptyObject = []byte("{}")

func appendField(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendJSON appends the length-prefixed canonical form of src.
func (h *ChainHasher) appendJSON(b, src []byte) ([]byte, error) {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	out, err := h.c.append(b, src)
	if err != nil {
		return b[:at], err
	}
	binary.BigEndian.PutUint32(out[at:], uint32(len(out)-at-4))
	return out, nil
}

// ChainLink returns an event's link: the SHA-256 over prev (the link of
// the event before it in its stream; 32 zero bytes when prev is empty: for
// version 0, or when the event before was stored without a link), then
// the version, the position and recordedAt in Unix microseconds, each as
// 8 bytes big-endian, then the event's content digest.
func ChainLink(prev []byte, version, position int64, recordedAt time.Time, digest [LinkSize]byte) [LinkSize]byte {
	var b [LinkSize + 3*8 + LinkSize]byte
	binary.BigEndian.PutUint64(b[LinkSize:], uint64(version))
	binary.BigEndian.PutUint64(b[LinkSize+8:], uint64(position))
	binary.BigEndian.PutUint64(b[LinkSize+16:], uint64(recordedAt.UnixMicro()))
	copy(b[LinkSize+24:], digest[:])
	if len(prev) != 0 && len(prev) != LinkSize {
		// Only a damaged link is another length: hashed as it is, like
		// the database does.
		return sha256.Sum256(append(slices.Clip(prev), b[LinkSize:]...))
	}
	copy(b[:], prev) // 32 zero bytes when prev is empty
	return sha256.Sum256(b[:])
}

// Chain break reasons (ChainBreak.Reason).
const (
	// BreakLinkMismatch: the stored link is not the one computed from the
	// event as stored and the link before it: this event, or how it is
	// linked, was changed.
	BreakLinkMismatch = "link-mismatch"
	// BreakVersionGap: an event is missing (deleted) where Version says.
	BreakVersionGap = "version-gap"
	// BreakMissingLink: an event without a link after linked events
	// (only events stored before links existed may lack one, as a
	// stream's first events).
	BreakMissingLink = "missing-link"
	// BreakBadLinkLength: the stored link is not 32 bytes.
	BreakBadLinkLength = "bad-link-length"
	// BreakBadContent: the stored data or metadata could not be read as
	// JSON.
	BreakBadContent = "bad-content"
)

// ChainBreak is the first place where a stream's chain does not hold.
type ChainBreak struct {
	Version int64
	// Reason is one of the Break constants.
	Reason string
}

// ChainReport is the verification of one stream's hash chain.
type ChainReport struct {
	StreamID string
	// Events is how many events the stream holds.
	Events int64
	// Unchained is how many events at the stream's start have no link:
	// events stored before links existed.
	Unchained int64
	// LastVersion is the version of the stream's last event.
	LastVersion int64
	// Head is the stream's last link (nil if it has none): the value an
	// export quotes.
	Head []byte
	// Broken is the first break, nil when the chain holds.
	Broken *ChainBreak
}

// ChainVerifier checks one stream's chain as its events arrive in version
// order: Add each event, then Report.
type ChainVerifier struct {
	h      ChainHasher
	report ChainReport
	next   int64
	prev   []byte // the last link verified
	linked bool
	head   []byte // the last event's link as stored
}

// Reset starts the verification of another stream.
func (v *ChainVerifier) Reset(streamID string) {
	v.report = ChainReport{StreamID: streamID, LastVersion: -1}
	v.next, v.prev, v.linked, v.head = 0, v.prev[:0], false, v.head[:0]
}

// Add checks the stream's next event as stored: e.Data and e.Metadata as
// the database returns them (any spelling of the stored JSON), e.Link as
// stored.
func (v *ChainVerifier) Add(e RecordedEvent) {
	r := &v.report
	r.Events++
	r.LastVersion = e.Version
	v.head = append(v.head[:0], e.Link...)
	if r.Broken != nil {
		return
	}
	brk := func(version int64, reason string) { r.Broken = &ChainBreak{Version: version, Reason: reason} }
	switch {
	case e.Version != v.next:
		brk(v.next, BreakVersionGap)
		return
	case e.Link == nil && v.linked:
		brk(e.Version, BreakMissingLink)
		return
	case e.Link == nil:
		r.Unchained++
		v.next++
		return
	case len(e.Link) != LinkSize:
		brk(e.Version, BreakBadLinkLength)
		return
	}
	d, err := v.h.ContentDigest(e.StreamID, e.ID, e.Type, e.Data, e.Metadata, e.SubjectRefs, e.Actor)
	if err != nil {
		brk(e.Version, BreakBadContent)
		return
	}
	var prev []byte
	if v.linked {
		prev = v.prev
	}
	if l := ChainLink(prev, e.Version, e.Position, e.RecordedAt, d); !bytes.Equal(l[:], e.Link) {
		brk(e.Version, BreakLinkMismatch)
		return
	}
	v.prev = append(v.prev[:0], e.Link...)
	v.linked = true
	v.next++
}

// Report returns the stream's verification so far.
func (v *ChainVerifier) Report() ChainReport {
	r := v.report
	if len(v.head) > 0 {
		r.Head = slices.Clone(v.head)
	}
	return r
}
