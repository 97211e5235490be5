package keystore_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/keystore"
)

const testRef = keystore.Ref("5d41402abc4b2a76b9719d911017c592aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")

// testMaterial is recognisable in every encoding: 0xc3 repeated.
func testMaterial() []byte { return bytes.Repeat([]byte{0xc3}, keystore.KeySize) }

func mustKey(t *testing.T) keystore.Key {
	t.Helper()
	k, err := keystore.NewKey(testRef, 2, testMaterial())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leaks reports which form of the material s contains, if any.
func leaks(s string) string {
	m := testMaterial()
	forms := map[string]string{
		"hex":             hex.EncodeToString(m),
		"HEX":             strings.ToUpper(hex.EncodeToString(m)),
		"hex (spaced)":    "c3 c3 c3 c3",
		"base64":          base64.StdEncoding.EncodeToString(m)[:40],
		"base64url":       base64.URLEncoding.EncodeToString(m)[:40],
		"decimal bytes":   "195 195 195 195",
		"decimal (comma)": "195, 195, 195",
		"0x bytes":        "0xc3, 0xc3",
		"raw":             string(m[:8]),
		"quoted":          `\xc3\xc3\xc3`,
	}
	for name, f := range forms {
		if strings.Contains(s, f) {
			return name
		}
	}
	return ""
}

func TestKeyNeverPrintsMaterial(t *testing.T) {
	k := mustKey(t)
	type hidden struct {
		k keystore.Key
	}
	type shown struct {
		K keystore.Key
	}
	type nested struct {
		keys map[int]keystore.Key
		list []keystore.Key
		ptr  *keystore.Key
	}
	values := map[string]any{
		"key":                      k,
		"pointer":                  &k,
		"unexported field":         hidden{k},
		"pointer to unexported":    &hidden{k},
		"exported field":           shown{k},
		"unexported map and slice": nested{keys: map[int]keystore.Key{2: k}, list: []keystore.Key{k}, ptr: &k},
		"slice":                    []keystore.Key{k},
		"map":                      map[string]keystore.Key{"k": k},
		"interface slice":          []any{k},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"}
	for name, v := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, v)
			if form := leaks(out); form != "" {
				t.Errorf("Sprintf(%q, %s) shows the material (%s): %s", verb, name, form, out)
			}
		}
		if form := leaks(fmt.Sprint(v)); form != "" {
			t.Errorf("Sprint(%s) shows the material (%s)", name, form)
		}
	}
	if s := k.String(); !strings.Contains(s, "[redacted]") || !strings.Contains(s, string(testRef)) || leaks(s) != "" {
		t.Errorf("String() = %q, want the ref and [redacted]", s)
	}
	if s := k.GoString(); leaks(s) != "" {
		t.Errorf("GoString() = %q", s)
	}
	if err := fmt.Errorf("wrapping %v: %w", k, errors.New("x")); leaks(err.Error()) != "" {
		t.Errorf("error text shows the material: %v", err)
	}
}

func TestKeyIsNotSerialisable(t *testing.T) {
	k := mustKey(t)
	for name, v := range map[string]any{
		"key":            k,
		"pointer":        &k,
		"exported field": struct{ K keystore.Key }{k},
		"slice":          []keystore.Key{k},
	} {
		b, err := json.Marshal(v)
		if err == nil {
			t.Errorf("json.Marshal(%s) = %s, want an error", name, b)
		}
		if leaks(string(b)) != "" || (err != nil && leaks(err.Error()) != "") {
			t.Errorf("json.Marshal(%s) shows the material", name)
		}
	}
	// Unexported fields are skipped by encoding/json.
	if b, err := json.Marshal(struct{ k keystore.Key }{k}); err != nil || leaks(string(b)) != "" {
		t.Errorf("json.Marshal(unexported field) = %s, %v", b, err)
	}
}

func TestKeyLogValue(t *testing.T) {
	k := mustKey(t)
	for name, h := range map[string]func(*bytes.Buffer) slog.Handler{
		"text": func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		"json": func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("key", "key", k, "ptr", &k, "any", slog.AnyValue(k), "struct", struct{ K keystore.Key }{k},
			"hidden", struct{ k keystore.Key }{k}, "group", slog.GroupValue(slog.Any("k", k)))
		out := buf.String()
		if form := leaks(out); form != "" {
			t.Errorf("%s handler shows the material (%s): %s", name, form, out)
		}
		if !strings.Contains(out, string(testRef)) {
			t.Errorf("%s handler does not show the ref: %s", name, out)
		}
	}
}

func TestNewKey(t *testing.T) {
	m := testMaterial()
	k, err := keystore.NewKey(testRef, 1, m)
	if err != nil {
		t.Fatal(err)
	}
	m[0] = 0 // the key keeps its own copy
	if got := k.Material(); got[0] != 0xc3 || k.Version() != 1 || k.Ref() != testRef || k.IsZero() {
		t.Fatalf("NewKey = %v", k)
	}
	if _, err := keystore.NewKey(testRef, 1, m[:16]); err == nil {
		t.Error("NewKey with 16 bytes: no error")
	}
	if _, err := keystore.NewKey(testRef, 0, testMaterial()); err == nil {
		t.Error("NewKey with version 0: no error")
	}
	var zero keystore.Key
	if !zero.IsZero() || zero.Material() != [keystore.KeySize]byte{} {
		t.Error("zero Key is not zero")
	}
	_ = fmt.Sprintf("%v %+v", zero, struct{ k keystore.Key }{zero}) // must not panic
}

func TestParseRef(t *testing.T) {
	if _, err := keystore.ParseRef(string(testRef)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc", strings.ToUpper(string(testRef)), string(testRef) + "0", "../" + string(testRef[3:]), strings.Repeat("g", 64)} {
		if _, err := keystore.ParseRef(bad); !errors.Is(err, keystore.ErrInvalidRef) {
			t.Errorf("ParseRef(%q) = %v, want ErrInvalidRef", bad, err)
		}
	}
	ref, err := keystore.RefFromBytes(testRef.Bytes())
	if err != nil || ref != testRef {
		t.Fatalf("RefFromBytes(Bytes()) = %q, %v", ref, err)
	}
	if keystore.Ref("zz").Bytes() != nil {
		t.Error("Bytes of an invalid ref is not nil")
	}
}

func TestValidateSubject(t *testing.T) {
	if err := keystore.ValidateSubject("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "secret-" + strings.Repeat("x", keystore.MaxSubjectLength)} {
		err := keystore.ValidateSubject(bad)
		if !errors.Is(err, keystore.ErrInvalidSubject) {
			t.Errorf("ValidateSubject: %v, want ErrInvalidSubject", err)
		}
		if bad != "" && strings.Contains(err.Error(), "secret-") {
			t.Errorf("the error echoes the subject: %v", err)
		}
	}
}
