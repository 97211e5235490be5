package forgettable

import (
	"fmt"
	"strconv"
	"strings"
)

// pointer is a parsed JSON Pointer (RFC 6901): the reference tokens, unescaped.
type pointer []string

// parsePointer parses a JSON Pointer such as "/first-name" or
// "/address/lines/0". The empty pointer (the whole document) is refused:
// only fields inside an event's data can be personal data.
func parsePointer(s string) (pointer, error) {
	if s == "" || s[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q: must start with /", truncate(s, 60))
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		if strings.Contains(p, "~") {
			var b strings.Builder
			for j := 0; j < len(p); j++ {
				if p[j] != '~' {
					b.WriteByte(p[j])
					continue
				}
				if j+1 == len(p) || (p[j+1] != '0' && p[j+1] != '1') {
					return nil, fmt.Errorf("JSON pointer %q: ~ must be followed by 0 or 1", truncate(s, 60))
				}
				if p[j+1] == '0' {
					b.WriteByte('~')
				} else {
					b.WriteByte('/')
				}
				j++
			}
			parts[i] = b.String()
		}
	}
	return pointer(parts), nil
}

func escapeToken(t string) string {
	if !strings.ContainsAny(t, "~/") {
		return t
	}
	return strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1")
}

// String returns the pointer's text form.
func (p pointer) String() string {
	var b strings.Builder
	for _, t := range p {
		b.WriteByte('/')
		b.WriteString(escapeToken(t))
	}
	return b.String()
}

// hasPrefix reports whether q is p or inside it.
func (p pointer) hasPrefix(q pointer) bool {
	if len(q) > len(p) {
		return false
	}
	for i := range q {
		if p[i] != q[i] {
			return false
		}
	}
	return true
}

// get returns the value at p in doc (a tree of map[string]any, []any and
// scalars), and whether it exists.
func (p pointer) get(doc any) (any, bool) {
	cur := doc
	for _, t := range p {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[t]
			if !ok {
				return nil, false
			}
			cur = v
		case []any:
			i, ok := arrayIndex(t, len(c))
			if !ok {
				return nil, false
			}
			cur = c[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// set replaces the existing value at p in doc.
func (p pointer) set(doc any, v any) bool {
	if len(p) == 0 {
		return false
	}
	parent, ok := p[:len(p)-1].get(doc)
	if !ok {
		return false
	}
	last := p[len(p)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last]; !ok {
			return false
		}
		c[last] = v
		return true
	case []any:
		i, ok := arrayIndex(last, len(c))
		if !ok {
			return false
		}
		c[i] = v
		return true
	}
	return false
}

// arrayIndex parses an RFC 6901 array index: digits, no leading zero.
func arrayIndex(t string, n int) (int, bool) {
	if t == "" || (len(t) > 1 && t[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(t); i++ {
		if t[i] < '0' || t[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(t)
	if err != nil || i >= n {
		return 0, false
	}
	return i, true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
