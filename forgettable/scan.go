package forgettable

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// sealedSpan is a sealed field found in stored JSON: the byte range of its
// string token (quotes included) and its JSON Pointer.
type sealedSpan struct {
	start, end int
	path       string
}

var errBadJSON = errors.New("stored data is not valid JSON")

// scanSealed finds the sealed fields of a JSON document (tests and tools;
// reads use scanner.run, which allocates nothing).
func scanSealed(b []byte) ([]sealedSpan, error) {
	var found []sealedSpan
	var s scanner
	s.visit = func(start, end int, path []byte) error {
		found = append(found, sealedSpan{start: start, end: end, path: string(path)})
		return nil
	}
	if err := s.run(b); err != nil {
		return nil, err
	}
	return found, nil
}

// scanner finds the sealed fields of a JSON document in one pass over its
// bytes, without decoding it, and calls visit for each with the byte range
// of its string token (quotes included) and its JSON Pointer (valid only
// during the call). A scanner can be reused; it keeps its path buffer.
type scanner struct {
	b     []byte
	i     int
	path  []byte // the current JSON Pointer, escaped
	visit func(start, end int, path []byte) error
	// values, if set, is called for every value (containers too) once it
	// is scanned, with its byte range and JSON Pointer.
	values func(start, end int, path []byte) error
}

// run scans b, which must be one JSON value.
func (s *scanner) run(b []byte) error {
	s.b, s.i, s.path = b, 0, s.path[:0]
	defer func() { s.b = nil }()
	s.skipSpace()
	if err := s.value(); err != nil {
		return err
	}
	s.skipSpace()
	if s.i != len(b) {
		return errBadJSON
	}
	return nil
}

func (s *scanner) skipSpace() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) value() error {
	start := s.i
	if err := s.scanValue(); err != nil {
		return err
	}
	if s.values != nil {
		return s.values(start, s.i, s.path)
	}
	return nil
}

func (s *scanner) scanValue() error {
	if s.i >= len(s.b) {
		return errBadJSON
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		start := s.i
		raw, err := s.str()
		if err != nil {
			return err
		}
		if bytes.HasPrefix(raw, []byte(EnvelopePrefix)) {
			return s.visit(start, s.i, s.path)
		}
		return nil
	default:
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return nil
			}
			s.i++
		}
		return nil
	}
}

// str consumes a string token and returns its raw contents (escapes not
// decoded).
func (s *scanner) str() ([]byte, error) {
	s.i++ // opening quote
	start := s.i
	for {
		j := bytes.IndexByte(s.b[s.i:], '"')
		if j < 0 {
			return nil, errBadJSON
		}
		s.i += j
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for k := s.i - 1; k >= start && s.b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			raw := s.b[start:s.i]
			s.i++
			return raw, nil
		}
		s.i++
	}
}

func (s *scanner) object() error {
	s.i++ // {
	base := len(s.path)
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	for {
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return errBadJSON
		}
		raw, err := s.str()
		if err != nil {
			return err
		}
		key := raw
		if bytes.IndexByte(raw, '\\') >= 0 {
			var k string
			if err := json.Unmarshal(s.b[s.i-len(raw)-2:s.i], &k); err != nil {
				return errBadJSON
			}
			key = []byte(k)
		}
		s.path = append(s.path[:base], '/')
		if bytes.IndexByte(key, '~') < 0 && bytes.IndexByte(key, '/') < 0 {
			s.path = append(s.path, key...)
		} else {
			s.path = append(s.path, escapeToken(string(key))...)
		}
		s.skipSpace()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return errBadJSON
		}
		s.i++
		s.skipSpace()
		if done, err := s.member('}'); done || err != nil {
			s.path = s.path[:base]
			return err
		}
	}
}

// member scans a value of an object or array and the separator after it;
// done is true at the container's closing byte.
func (s *scanner) member(closing byte) (done bool, err error) {
	if err := s.value(); err != nil {
		return false, err
	}
	s.skipSpace()
	if s.i >= len(s.b) {
		return false, errBadJSON
	}
	switch s.b[s.i] {
	case ',':
		s.i++
		return false, nil
	case closing:
		s.i++
		return true, nil
	}
	return false, errBadJSON
}

func (s *scanner) array() error {
	s.i++ // [
	base := len(s.path)
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for n := 0; ; n++ {
		s.path = append(s.path[:base], '/')
		s.path = strconv.AppendInt(s.path, int64(n), 10)
		s.skipSpace()
		if done, err := s.member(']'); done || err != nil {
			s.path = s.path[:base]
			return err
		}
	}
}
