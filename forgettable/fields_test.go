package forgettable

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/keystore"
)

func testKey(t testing.TB, subject string, version int) keystore.Key {
	t.Helper()
	sum := sha256.Sum256([]byte(subject))
	ref := keystore.Ref(hex.EncodeToString(sum[:]))
	material := make([]byte, keystore.KeySize)
	_, _ = rand.Read(material)
	k, err := keystore.NewKey(ref, version, material)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPointer(t testing.TB, s string) pointer {
	t.Helper()
	p, err := parsePointer(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func keysOf(ks ...keystore.Key) keySource {
	return func(ref keystore.Ref, version int) (keystore.Key, string, error) {
		for _, k := range ks {
			if k.Ref() == ref && k.Version() == version {
				return k, "", nil
			}
		}
		return keystore.Key{}, "", errors.New("no key")
	}
}

func jsonEq(t *testing.T, got, want []byte) {
	t.Helper()
	g, err := decodeJSON(got)
	if err != nil {
		t.Fatalf("got %s: %v", got, err)
	}
	w, err := decodeJSON(want)
	if err != nil {
		t.Fatalf("want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got %s, want %s", got, want)
	}
}

var eventID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

func TestPointer(t *testing.T) {
	doc, _ := decodeJSON([]byte(`{"a":{"b/c":[10,{"~d":true}]},"":1}`))
	cases := []struct {
		ptr  string
		want any
		ok   bool
	}{
		{"/a/b~1c/0", json.Number("10"), true},
		{"/a/b~1c/1/~0d", true, true},
		{"/", json.Number("1"), true},
		{"/a/b~1c/2", nil, false},
		{"/a/b~1c/01", nil, false},
		{"/a/x", nil, false},
		{"/a/b~1c/-", nil, false},
	}
	for _, c := range cases {
		p := mustPointer(t, c.ptr)
		got, ok := p.get(doc)
		if ok != c.ok || (ok && !reflect.DeepEqual(got, c.want)) {
			t.Errorf("get %s = %v, %v; want %v, %v", c.ptr, got, ok, c.want, c.ok)
		}
		if ok && p.String() != c.ptr {
			t.Errorf("String() = %q, want %q", p.String(), c.ptr)
		}
	}
	for _, bad := range []string{"", "a", "/a~", "/a~2"} {
		if _, err := parsePointer(bad); err == nil {
			t.Errorf("parsePointer(%q) accepted", bad)
		}
	}
}

// Every JSON type round-trips through seal and open, and the stored form
// contains none of the plaintext.
func TestSealOpenRoundTrip(t *testing.T) {
	k := testKey(t, "casey", 1)
	data := []byte(`{"first-name":"Casey","phone":"555-2951","age":41.50,"tags":["a",{"b":null}],"addr":{"city":"Zürich <>&"},"ok":true,"none":null,"keep":"public"}`)
	paths := []string{"/first-name", "/phone", "/age", "/tags", "/addr", "/ok", "/none"}
	var fields []sealField
	for _, p := range paths {
		fields = append(fields, sealField{path: mustPointer(t, p), key: k})
	}
	sealed, err := sealData(data, "lead-12", eventID, fields)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"Casey", "555-2951", "41.5", "Zürich", "Zurich"} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("sealed data contains %q: %s", secret, sealed)
		}
	}
	if !bytes.Contains(sealed, []byte(`"keep":"public"`)) {
		t.Errorf("unsealed field changed: %s", sealed)
	}
	opened, redacted, err := openData(sealed, "lead-12", eventID, keysOf(k))
	if err != nil || len(redacted) != 0 {
		t.Fatalf("open: %v, redacted %v", err, redacted)
	}
	jsonEq(t, opened, data)
	if !bytes.Contains(opened, []byte(`41.50`)) {
		t.Errorf("number lost its exact form: %s", opened)
	}
	keys, err := fieldKeys(sealed)
	if err != nil || len(keys) != len(paths) || keys[0].ref != k.Ref() || keys[0].version != 1 {
		t.Errorf("fieldKeys = %v, %v", keys, err)
	}
}

func TestRedaction(t *testing.T) {
	casey, other := testKey(t, "casey", 1), testKey(t, "other", 1)
	data := []byte(`{"from":"Casey","to":"Robin","amount":10}`)
	sealed, err := sealData(data, "transfer-1", eventID, []sealField{{mustPointer(t, "/from"), casey}, {mustPointer(t, "/to"), other}})
	if err != nil {
		t.Fatal(err)
	}
	forgetCasey := func(ref keystore.Ref, v int) (keystore.Key, string, error) {
		if ref == casey.Ref() {
			return keystore.Key{}, ReasonForgotten, nil
		}
		return keysOf(other)(ref, v)
	}
	opened, redacted, err := openData(sealed, "transfer-1", eventID, forgetCasey)
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, opened, []byte(`{"from":null,"to":"Robin","amount":10}`))
	if want := []Redaction{{Path: "/from", Reason: ReasonForgotten}}; !reflect.DeepEqual(redacted, want) {
		t.Errorf("redacted = %v, want %v", redacted, want)
	}
	// A source error is an error, never a redaction.
	down := func(keystore.Ref, int) (keystore.Key, string, error) {
		return keystore.Key{}, "", keystore.ErrUnavailable
	}
	if _, _, err := openData(sealed, "transfer-1", eventID, down); !errors.Is(err, keystore.ErrUnavailable) {
		t.Errorf("key store down: err = %v, want ErrUnavailable", err)
	}
}

// A ciphertext moved to another event, field or stream, or altered, fails to
// open with ErrTampered.
func TestTamper(t *testing.T) {
	k := testKey(t, "casey", 1)
	sealed, err := sealData([]byte(`{"a":"Casey","b":"x"}`), "lead-12", eventID, []sealField{{mustPointer(t, "/a"), k}, {mustPointer(t, "/b"), k}})
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeJSON(sealed)
	m := doc.(map[string]any)
	envA := m["a"].(string)

	moved, _ := encodeJSON(map[string]any{"b": envA, "a": m["b"]})
	other := eventID
	other[0] ^= 1
	flipped := []byte(envA)
	flipped[len(flipped)-5] ^= 1 // still base64, different bytes
	if flipped[len(flipped)-5] == '-' || flipped[len(flipped)-5] == '_' {
		flipped[len(flipped)-5] = 'A'
	}
	altered, _ := encodeJSON(map[string]any{"a": string(flipped)})
	cases := map[string]func() error{
		"moved to another field": func() error { _, _, err := openData(moved, "lead-12", eventID, keysOf(k)); return err },
		"other event":            func() error { _, _, err := openData(sealed, "lead-12", other, keysOf(k)); return err },
		"other stream":           func() error { _, _, err := openData(sealed, "lead-13", eventID, keysOf(k)); return err },
		"altered bytes":          func() error { _, _, err := openData(altered, "lead-12", eventID, keysOf(k)); return err },
		"truncated": func() error {
			short, _ := encodeJSON(map[string]any{"a": envA[:len(EnvelopePrefix)+20]})
			_, _, err := openData(short, "lead-12", eventID, keysOf(k))
			return err
		},
	}
	for name, f := range cases {
		if err := f(); !errors.Is(err, ErrTampered) {
			t.Errorf("%s: err = %v, want ErrTampered", name, err)
		}
	}
	// The wrong key version is a different key: it does not open either.
	k2 := testKey(t, "casey", 2)
	wrong := func(ref keystore.Ref, v int) (keystore.Key, string, error) {
		kk, _ := keystore.NewKey(ref, v, func() []byte { m := k2.Material(); return m[:] }())
		return kk, "", nil
	}
	if _, _, err := openData(sealed, "lead-12", eventID, wrong); !errors.Is(err, ErrTampered) {
		t.Errorf("wrong key: err = %v, want ErrTampered", err)
	}
}

func TestReservedPrefixRefused(t *testing.T) {
	k := testKey(t, "casey", 1)
	for _, data := range []string{`{"a":"lethe:v1:abc"}`, `{"x":{"y":["lethe:v9"]}}`} {
		_, err := sealData([]byte(data), "s-1", eventID, []sealField{{mustPointer(t, "/a"), k}})
		if !errors.Is(err, ErrReservedValue) {
			t.Errorf("%s: err = %v, want ErrReservedValue", data, err)
		}
	}
	if _, err := sealData([]byte(`{"a":"x","b":"lethe:other"}`), "s-1", eventID, []sealField{{mustPointer(t, "/a"), k}}); err != nil {
		t.Errorf("a string merely starting with lethe: refused: %v", err)
	}
}

func TestSealMissingPath(t *testing.T) {
	k := testKey(t, "casey", 1)
	_, err := sealData([]byte(`{"a":1}`), "s-1", eventID, []sealField{{mustPointer(t, "/b"), k}})
	if err == nil || !strings.Contains(err.Error(), "/b") {
		t.Errorf("err = %v, want a missing-path error naming /b", err)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	k := testKey(f, "casey", 3)
	env, err := seal(k, fieldLocation{streamID: "s-1", eventID: eventID, path: "/a"}, []byte(`"Casey"`))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env)
	f.Add(EnvelopePrefix)
	f.Add(EnvelopePrefix + "AAAA")
	f.Add(env[:len(env)-10])
	f.Add("lethe:v1:" + strings.Repeat("_", 200))
	f.Fuzz(func(t *testing.T, s string) {
		e, err := decodeEnvelope(s)
		// The read path's first pass decodes the header alone: it must
		// agree with the full decoding on every envelope that decodes.
		k, kerr := envelopeKey([]byte(s))
		if err != nil {
			if !errors.Is(err, ErrTampered) && isEnvelope(s) {
				t.Fatalf("decode error %v does not wrap ErrTampered", err)
			}
			if kerr != nil && !errors.Is(kerr, ErrTampered) && isEnvelope(s) {
				t.Fatalf("envelopeKey error %v does not wrap ErrTampered", kerr)
			}
			return
		}
		if kerr != nil || k != e.keyID() {
			t.Fatalf("envelopeKey = %v, %v; decoding gives %v", k, kerr, e.keyID())
		}
		if _, err := keystore.ParseRef(string(e.ref())); err != nil {
			t.Fatalf("decoded an invalid ref: %v", err)
		}
		if e.keyVersion < 1 {
			t.Fatalf("decoded key version %d", e.keyVersion)
		}
		// Opening with an unrelated key must fail, not panic.
		if _, err := e.open(testKey(t, "other", e.keyVersion), fieldLocation{streamID: "s-1", eventID: eventID, path: "/a"}); err == nil && s != env {
			t.Fatalf("opened a fuzzed envelope with the wrong key")
		}
	})
}

// scanSealed (bytes) and the decoding reference agree on every document.
func FuzzScanSealed(f *testing.F) {
	k := testKey(f, "casey", 1)
	sealed, err := sealData([]byte(`{"a":"x","b~/c":{"d":[1,"y",{"e":"z"}]},"f":"keep"}`), "s-1", eventID,
		[]sealField{{mustPointer(f, "/a"), k}, {mustPointer(f, "/b~0~1c/d/1"), k}, {mustPointer(f, "/b~0~1c/d/2/e"), k}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed)
	f.Add([]byte(`{"x": "lethe:v1:AAAA", "y": ["lethe:v1:", 1.5e3, true, null], "z\u0041": {"q": "lethe:v1:_-"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"a":`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = scanSealed(raw) // any input: it must not panic
		doc, derr := decodeJSON(raw)
		if derr != nil {
			return
		}
		// Stored data is jsonb, which keeps the last of duplicate keys, as
		// encoding/json does: compare on that canonical form.
		data, err := encodeJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		spans, err := scanSealed(data)
		if err != nil {
			t.Fatalf("scanner refused valid JSON %q: %v", data, err)
		}
		var want []string
		var walk func(v any, path pointer)
		walk = func(v any, path pointer) {
			switch c := v.(type) {
			case string:
				if isEnvelope(c) {
					want = append(want, path.String())
				}
			case map[string]any:
				for k, x := range c {
					walk(x, append(append(pointer(nil), path...), k))
				}
			case []any:
				for i, x := range c {
					walk(x, append(append(pointer(nil), path...), fmt.Sprint(i)))
				}
			}
		}
		walk(doc, nil)
		var got []string
		for _, sp := range spans {
			got = append(got, sp.path)
		}
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("scanner found %v, decoder %v in %q", got, want, data)
		}
	})
}

// Sealing splices envelopes into the data as sent: whitespace, escapes and
// duplicate keys (every occurrence sealed: jsonb keeps the last) leave no
// plaintext, and what opens is the value's compact JSON.
func TestSealSplicesAsSent(t *testing.T) {
	k := testKey(t, "casey", 1)
	data := []byte("{ \"name\" : \"Ca\\u0073ey\" ,\n \"n\": { \"phone\": [ \"555-2951\" , 1 ] }, \"name\": \"Casey D\", \"keep\": \"x\" }")
	sealed, err := sealData(data, "lead-12", eventID, []sealField{{mustPointer(t, "/name"), k}, {mustPointer(t, "/n/phone"), k}})
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{`Ca\u0073ey`, "555-2951", "Casey D"} {
		if bytes.Contains(sealed, []byte(secret)) {
			t.Errorf("sealed data holds %q: %s", secret, sealed)
		}
	}
	if n := bytes.Count(sealed, []byte(EnvelopePrefix)); n != 3 {
		t.Errorf("%d envelopes in %s, want 3 (both names, the phone list)", n, sealed)
	}
	opened, _, err := openData(sealed, "lead-12", eventID, keysOf(k))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(opened, []byte(`["555-2951",1]`)) || !bytes.Contains(opened, []byte(`"Casey D"`)) {
		t.Errorf("opened %s", opened)
	}
	// A reserved prefix hidden behind an escape is refused too.
	hidden := []byte(`{"a":"lethe\u003av1:x","b":"y"}`)
	if _, err := sealData(hidden, "lead-12", eventID, []sealField{{mustPointer(t, "/b"), k}}); !errors.Is(err, ErrReservedValue) {
		t.Errorf("escaped reserved prefix: %v", err)
	}
	if _, err := sealData([]byte(`{"a":1,}`), "lead-12", eventID, []sealField{{mustPointer(t, "/a"), k}}); err == nil {
		t.Error("invalid JSON sealed")
	}
}

func TestCheckOverlaps(t *testing.T) {
	for _, tc := range []struct {
		paths []string
		ok    bool
	}{
		{[]string{"/a", "/b", "/c/d"}, true},
		{[]string{"/a", "/ab"}, true},
		{[]string{"/a/b", "/a/c"}, true},
		{[]string{"/a", "/a"}, false},
		{[]string{"/a", "/a/b"}, false},
		{[]string{"/a/b/c", "/a"}, false},
		{[]string{"/x~1y", "/x/y"}, true},
		{[]string{"/x~1y/z", "/x~1y"}, false},
	} {
		var ptrs []pointer
		for _, p := range tc.paths {
			ptrs = append(ptrs, mustPointer(t, p))
		}
		if err := checkOverlaps(ptrs); (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.paths, err)
		}
	}
}
