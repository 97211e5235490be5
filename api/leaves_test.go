package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

// referenceLeaves counts the scalar values of a JSON text with a decoder's
// tokens (duplicate keys count each time, as they are in the text).
func referenceLeaves(t testing.TB, b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct{ object, afterKey bool } // afterKey: a value comes next
	var stack []frame
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n // io.EOF: the text is valid (checked by the caller)
		}
		top := len(stack) - 1
		inObject := top >= 0 && stack[top].object
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{', '[':
				if inObject {
					stack[top].afterKey = false // the container is the value
				}
				stack = append(stack, frame{object: d == '{'})
			default:
				stack = stack[:top]
			}
			continue
		}
		if inObject && !stack[top].afterKey {
			stack[top].afterKey = true // a key
			continue
		}
		if inObject {
			stack[top].afterKey = false
		}
		n++
	}
}

var leafSeeds = []string{
	`{}`, `[]`, `{"a":1}`, `{"a":"b"}`, `{"a":null,"b":true,"c":false}`,
	`{"a":{"b":{"c":[1,2,{"d":"e"}]}}}`, `{"k\"ey":"va\\\"l:ue,}"}`,
	` { "a" : [ 1 , -2.5e10 , "x" ] , "b" : { } , "c" : [ ] } `,
	`{"":""}`, `[[[[]]],{}]`, `"top"`, `42`, `{"a":[{"b":1},{"c":2}],"d":[[3,4],[5]]}`,
	`{"unicode":"\u00e9\ud83d\ude00","esc":"\\\\"}`,
}

// countLeaves agrees with a decoder on every valid JSON text.
func TestCountLeavesAgreesWithADecoder(t *testing.T) {
	for _, s := range leafSeeds {
		if got, want := countLeaves([]byte(s)), referenceLeaves(t, []byte(s)); got != want {
			t.Errorf("countLeaves(%s) = %d, want %d", s, got, want)
		}
	}
}

func FuzzCountLeaves(f *testing.F) {
	for _, s := range leafSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := countLeaves(b) // never panics, valid or not
		if !json.Valid(b) {
			return
		}
		if want := referenceLeaves(t, b); n != want {
			t.Errorf("countLeaves(%q) = %d, want %d", b, n, want)
		}
	})
}
