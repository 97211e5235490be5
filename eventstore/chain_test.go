package eventstore_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lethe-store/lethe/eventstore"
)

func TestAppendCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty object", ` { } `, `{}`},
		{"empty array", "[ \n\t\r]", `[]`},
		{"literals", `[true , false,null]`, `[true,false,null]`},
		{"key order", `{"b":1,"a":2,"c":3}`, `{"a":2,"b":1,"c":3}`},
		{"key order is bytewise, not by length", `{"bb":1,"a":2,"B":3,"é":4,"":5}`, `{"":5,"B":3,"a":2,"bb":1,"é":4}`},
		{"duplicates: last wins", `{"a":1,"b":2,"a":3}`, `{"a":3,"b":2}`},
		{"duplicates after sorting", `{"b":1,"a":2,"b":{"x":1},"a":[4]}`, `{"a":[4],"b":{"x":1}}`},
		{"duplicate spelled differently", `{"a":1,"\u0061":2}`, `{"a":2}`},
		{"nested objects sorted", `{"z":{"y":1,"x":[{"b":1,"a":2}]},"a":0}`, `{"a":0,"z":{"x":[{"a":2,"b":1}],"y":1}}`},
		{"keys sort by decoded bytes", `{"a#":1,"a\"":2}`, `{"a\"":2,"a#":1}`},
		{"escaped key sorts by its byte", `{"a\n":1,"a":2,"a ":3}`, `{"a":2,"a\u000a":1,"a ":3}`},
		{"whitespace", "{\n  \"a\" :\t[ 1 , 2 ] ,\r\n \"b\" : \"x y\" }", `{"a":[1,2],"b":"x y"}`},
		{"string escapes", `"\"\\\/\b\f\n\r\t"`, `"\"\\/\u0008\u000c\u000a\u000d\u0009"`},
		{"unicode escapes", `"\u00e9\u20AC\u0041\u007f"`, "\"é€A\x7f\""},
		{"control character escapes are lowercase", `"\u001F\u001b"`, `"\u001f\u001b"`},
		{"nul", `"a\u0000b"`, `"a\u0000b"`},
		{"surrogate pair", `"\ud83d\ude00 \uD834\uDD1E"`, "\"😀 𝄞\""},
		{"raw unicode kept", `"héllo 😀 ☃"`, `"héllo 😀 ☃"`},
		{"integers", `[0,1,-1,10,100,1200,-0]`, `[0,1,-1,1e1,1e2,12e2,0]`},
		{"decimals", `[1.5,1.50,0.5,0.050,-0.0,0.000,123.456]`, `[15e-1,15e-1,5e-1,5e-2,0,0,123456e-3]`},
		{"exponents", `[1e2,1E2,1e+2,1.0e2,100e0,10e1,0.1e3,1e-2,0e10,5E-0]`, `[1e2,1e2,1e2,1e2,1e2,1e2,1e2,1e-2,0,5]`},
		{"exponent with leading zeros", `[1e0002,2E-007]`, `[1e2,2e-7]`},
		{"big numbers stay exact", `[123456789012345678901234567890,0.00000000000000000000001,-9.99e999]`,
			`[12345678901234567890123456789e1,1e-23,-999e997]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := eventstore.AppendCanonicalJSON([]byte("prefix:"), []byte(tt.in))
			if err != nil {
				t.Fatalf("AppendCanonicalJSON(%s): %v", tt.in, err)
			}
			if got, want := string(got), "prefix:"+tt.want; got != want {
				t.Errorf("AppendCanonicalJSON(%s):\n got %s\nwant %s", tt.in, got, want)
			}
			if !json.Valid([]byte(tt.want)) {
				t.Errorf("canonical form %s is not valid JSON", tt.want)
			}
			again, err := eventstore.AppendCanonicalJSON(nil, []byte(tt.want))
			if err != nil || string(again) != tt.want {
				t.Errorf("canonical form is not stable: %s -> %s, %v", tt.want, again, err)
			}
		})
	}
}

func TestAppendCanonicalJSONInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		``, ` `, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{a:1}`, `[1,]`, `[1 2]`, `{"a":1}x`, `{"a":1}{}`,
		`"abc`, "\"a\x01b\"", `"\x"`, `"\u12"`, `"\u12g4"`, `"\ud800"`, `"\ud800x"`, `"\ud800\u0041"`, `"\udc00"`,
		"\"\xff\"", "\"\xed\xa0\x80\"", `01`, `-`, `1.`, `.5`, `1e`, `1e+`, `+1`, `--1`, `1.e5`, `tru`, `nul`, `NaN`, `Infinity`,
		`1e99999999999999999999`, `1e-99999999999999999999`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
	} {
		got, err := eventstore.AppendCanonicalJSON([]byte("keep"), []byte(in))
		if !errors.Is(err, eventstore.ErrInvalidJSON) {
			t.Errorf("AppendCanonicalJSON(%q): got %q, %v; want ErrInvalidJSON", in, got, err)
		}
		if string(got) != "keep" {
			t.Errorf("AppendCanonicalJSON(%q) on error: got %q, want dst unchanged", in, got)
		}
	}
	deep := strings.Repeat("[", 10000) + strings.Repeat("]", 10000)
	if _, err := eventstore.AppendCanonicalJSON(nil, []byte(deep)); err != nil {
		t.Errorf("10,000 nested arrays: %v, want accepted (as encoding/json)", err)
	}
}

// The digest's layout is fixed: a change breaks every stored chain. These
// values pin it.
func TestContentDigestAndChainLinkArePinned(t *testing.T) {
	t.Parallel()
	id, _ := eventstore.ParseEventID("01234567-89ab-cdef-0123-456789abcdef")
	ref := strings.Repeat("ab", 32)
	d, err := eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"b": 1.50, "a": "x"}`), nil, []string{ref, ref}, "token:t1")
	if err != nil {
		t.Fatal(err)
	}
	same, err := eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"a":"x","b":15e-1}`), []byte(`{ }`), []string{ref, ref}, "token:t1")
	if err != nil || same != d {
		t.Errorf("digest of the same event spelled differently: %x, %v; want %x", same, err, d)
	}
	for name, other := range map[string]func() ([32]byte, error){
		"actor": func() ([32]byte, error) {
			return eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"a":"x","b":1.5}`), nil, []string{ref, ref}, "")
		},
		"refs": func() ([32]byte, error) {
			return eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"a":"x","b":1.5}`), nil, []string{ref}, "token:t1")
		},
		"stream": func() ([32]byte, error) {
			return eventstore.ContentDigest("lead-2", id, "lead-initialized", []byte(`{"a":"x","b":1.5}`), nil, []string{ref, ref}, "token:t1")
		},
		"data": func() ([32]byte, error) {
			return eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"a":"y","b":1.5}`), nil, []string{ref, ref}, "token:t1")
		},
		// Length prefixes: moving a byte from one field to the next changes the digest.
		"boundaries": func() ([32]byte, error) {
			return eventstore.ContentDigest("lead-1", id, "lead-initialized", []byte(`{"a":"x","b":1.5}`), nil, []string{ref, ref}, "token:t")
		},
	} {
		o, err := other()
		if err != nil || o == d {
			t.Errorf("digest with another %s: %x, %v; want a different digest", name, o, err)
		}
	}
	at := time.Date(2026, 12, 1, 10, 0, 0, 123456000, time.UTC)
	l0 := eventstore.ChainLink(nil, 0, 65536, at, d)
	if z := eventstore.ChainLink(make([]byte, 32), 0, 65536, at, d); z != l0 {
		t.Errorf("ChainLink(nil) and ChainLink(32 zero bytes) differ")
	}
	l1 := eventstore.ChainLink(l0[:], 1, 65537, at, d)
	if l1 == l0 {
		t.Error("link 1 equals link 0")
	}
	pin := map[string]string{"digest": hex.EncodeToString(d[:]), "link0": hex.EncodeToString(l0[:]), "link1": hex.EncodeToString(l1[:])}
	want := map[string]string{
		"digest": pinnedDigest,
		"link0":  pinnedLink0,
		"link1":  pinnedLink1,
	}
	for k := range want {
		if pin[k] != want[k] {
			t.Errorf("%s: got %s, want %s", k, pin[k], want[k])
		}
	}
}

// Pinned values, computed independently of this package (a few lines of
// Python's hashlib and struct over the layout docs/architecture.md gives).
const (
	pinnedDigest = "6aebd30ed759122cf2b1789e5b77adf0ccb2e1c7b38f5a34fa2ad848db1c98bb"
	pinnedLink0  = "dae6a6a0886889912a7fb6c092c19f6bcdfa87d84cd5036920f0f5565cc002e6"
	pinnedLink1  = "b1de7dae645f2ba0c5b380a82b51e2a68687cb118c095fa5ffa92b401b4b34e9"
)

func TestChainVerifier(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 1000, time.UTC)
	mk := func(n int, unchained int) []eventstore.RecordedEvent {
		var evs []eventstore.RecordedEvent
		var prev []byte
		for v := range n {
			e := eventstore.RecordedEvent{StreamID: "s-1", Version: int64(v), Position: int64(v+1) << 16, ID: eventstore.NewEventID(),
				Type: "t", Data: json.RawMessage(`{"v": 1.0}`), Metadata: json.RawMessage(`{}`), RecordedAt: at}
			if v >= unchained {
				d, err := eventstore.ContentDigest(e.StreamID, e.ID, e.Type, e.Data, e.Metadata, nil, "")
				if err != nil {
					t.Fatal(err)
				}
				l := eventstore.ChainLink(prev, e.Version, e.Position, e.RecordedAt, d)
				e.Link, prev = l[:], l[:]
			}
			evs = append(evs, e)
		}
		return evs
	}
	run := func(evs []eventstore.RecordedEvent) eventstore.ChainReport {
		var v eventstore.ChainVerifier
		v.Reset("s-1")
		for _, e := range evs {
			v.Add(e)
		}
		return v.Report()
	}
	if r := run(mk(5, 0)); r.Broken != nil || r.Events != 5 || r.Unchained != 0 || r.LastVersion != 4 || len(r.Head) != 32 {
		t.Errorf("intact chain: %+v", r)
	}
	if r := run(mk(5, 2)); r.Broken != nil || r.Unchained != 2 {
		t.Errorf("unchained prefix: %+v, want no break, 2 unchained", r)
	}
	evs := mk(5, 0)
	evs[3].Data = json.RawMessage(`{"v": 2}`)
	if r := run(evs); r.Broken == nil || *r.Broken != (eventstore.ChainBreak{Version: 3, Reason: eventstore.BreakLinkMismatch}) || r.Events != 5 {
		t.Errorf("changed data: %+v %+v", r, r.Broken)
	}
	evs = mk(5, 0)
	evs = append(evs[:2], evs[3:]...)
	if r := run(evs); r.Broken == nil || *r.Broken != (eventstore.ChainBreak{Version: 2, Reason: eventstore.BreakVersionGap}) {
		t.Errorf("deleted event: %+v %+v", r, r.Broken)
	}
	evs = mk(5, 0)
	evs[3].Link = nil
	if r := run(evs); r.Broken == nil || *r.Broken != (eventstore.ChainBreak{Version: 3, Reason: eventstore.BreakMissingLink}) {
		t.Errorf("missing link: %+v %+v", r, r.Broken)
	}
	evs = mk(5, 0)
	evs[1].Link = evs[1].Link[:31]
	if r := run(evs); r.Broken == nil || *r.Broken != (eventstore.ChainBreak{Version: 1, Reason: eventstore.BreakBadLinkLength}) {
		t.Errorf("short link: %+v %+v", r, r.Broken)
	}
	evs = mk(5, 0)
	evs[0].RecordedAt = evs[0].RecordedAt.Add(time.Microsecond)
	if r := run(evs); r.Broken == nil || r.Broken.Version != 0 {
		t.Errorf("changed time: %+v %+v", r, r.Broken)
	}
}

// Canonicalisation runs on every append: it must not allocate per token.
func TestCanonicalJSONAllocations(t *testing.T) {
	src := []byte(`{"lead-id": 12, "first-name": "Casey", "last-name": "David", "phone": "555-2951", "tags": ["a", "b"], "nested": {"z": 1.50, "a": null}}`)
	buf := make([]byte, 0, 512)
	var h eventstore.ChainHasher
	id := eventstore.NewEventID()
	if _, err := h.ContentDigest("lead-12", id, "t", src, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		_, _ = h.ContentDigest("lead-12", id, "t", src, nil, nil, "")
	})
	if allocs > 1 {
		t.Errorf("ContentDigest with a warm ChainHasher: %.1f allocations, want at most 1", allocs)
	}
	out, _ := eventstore.AppendCanonicalJSON(buf, src)
	if !bytes.HasPrefix(out, []byte(`{"first-name":"Casey"`)) {
		t.Errorf("got %s", out)
	}
}

func BenchmarkContentDigest(b *testing.B) {
	src := []byte(`{"lead-id": 12, "first-name": {"lethe": "v1", "ref": "292dee07", "ct": "q83vEjRWeJq83vEjRWeJq83vEjRWeJ"}, "last-name": "David", "phone": "555-2951", "at": "2026-12-01T10:00:00Z"}`)
	var h eventstore.ChainHasher
	id := eventstore.NewEventID()
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		_, _ = h.ContentDigest("lead-12", id, "contact-details-updated", src, []byte(`{"correlation": "x"}`), nil, "token:1")
	}
}

// FuzzCanonicalJSON: canonicalising never panics, its output is valid JSON
// and canonical already (idempotent), and it accepts what encoding/json
// accepts, lone surrogates and invalid UTF-8 aside (PostgreSQL refuses
// them too).
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"b":1,"a":[1.50,-0,1e2,"x\u00e9\n"]}`, `{"a":1,"a":2}`, `"\ud83d\ude00"`, `[0.000e-5, 12E+3, -1.0]`,
		`{"a\"":1,"a#":2}`, `[[[[]]]]`, `1e999999`, `"\u0000"`, `{"z":{"y":{"x":null}}}`, ` true `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := eventstore.AppendCanonicalJSON(nil, in)
		if err != nil {
			if !errors.Is(err, eventstore.ErrInvalidJSON) {
				t.Fatalf("error %v does not wrap ErrInvalidJSON", err)
			}
			if json.Valid(in) && utf8.Valid(in) && !bytes.Contains(in, []byte(`\u`)) && !bytes.Contains(in, []byte(`\U`)) &&
				!bytes.ContainsAny(in, "eE") && bytes.Count(in, []byte("[")) < 5000 {
				t.Fatalf("valid JSON %q refused: %v", in, err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("canonical form %q of %q is not valid JSON", out, in)
		}
		again, err := eventstore.AppendCanonicalJSON(nil, out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
		// A number keeps its exact value (checked with math/big where
		// the exponent is small enough to expand).
		if n := bytes.TrimSpace(in); len(n) > 0 && (n[0] == '-' || n[0] >= '0' && n[0] <= '9') && !bytes.ContainsAny(n, "eE") {
			var a, b big.Rat
			if _, ok := a.SetString(string(n)); !ok {
				t.Fatalf("math/big cannot read %q", n)
			}
			if _, ok := b.SetString(string(out)); !ok || a.Cmp(&b) != 0 {
				t.Fatalf("number %q became %q: another value", n, out)
			}
		}
	})
}
