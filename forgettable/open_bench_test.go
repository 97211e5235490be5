package forgettable

import (
	"crypto/cipher"
	"fmt"
	"strings"
	"testing"
)

// BenchmarkOpenFields is the CPU cost of opening one event with three
// sealed fields on the read path: a reused opener, the key's AEAD ready.
func BenchmarkOpenFields(b *testing.B) {
	k := testKey(b, "casey", 1)
	data := []byte(`{"first-name":"Casey","last-name":"Davis","phone-number":"555-8101","timestamp":"2020-05-20T12:32:08.24Z","seq":12345}`)
	sealed, err := sealData(data, "lead-12", eventID, []sealField{{mustPointer(b, "/first-name"), k}, {mustPointer(b, "/last-name"), k}, {mustPointer(b, "/phone-number"), k}})
	if err != nil {
		b.Fatal(err)
	}
	aead, err := newAEAD(k)
	if err != nil {
		b.Fatal(err)
	}
	o := newFieldOpener(func(keyID) (cipher.AEAD, string, error) { return aead, "", nil })
	dst := make([]byte, 0, len(sealed))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := o.open(sealed, "lead-12", eventID, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvelopeKeys is the first pass of a read: which keys an event
// needs.
func BenchmarkEnvelopeKeys(b *testing.B) {
	k := testKey(b, "casey", 1)
	data := []byte(`{"first-name":"Casey","last-name":"Davis","phone-number":"555-8101","timestamp":"2020-05-20T12:32:08.24Z","seq":12345}`)
	sealed, err := sealData(data, "lead-12", eventID, []sealField{{mustPointer(b, "/first-name"), k}, {mustPointer(b, "/last-name"), k}, {mustPointer(b, "/phone-number"), k}})
	if err != nil {
		b.Fatal(err)
	}
	var sc scanner
	n := 0
	sc.visit = func(start, end int, path []byte) error {
		_, err := envelopeKey(sealed[start+1 : end-1])
		n++
		return err
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := sc.run(sealed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealData is the CPU cost of sealing one event with three
// personal fields on the append path (a sealer per key, as in an append).
func BenchmarkSealData(b *testing.B) {
	k := testKey(b, "casey", 1)
	data := []byte(`{"first-name":"Casey","last-name":"Davis","phone-number":"555-8101","timestamp":"2020-05-20T12:32:08.24Z","seq":12345}`)
	fields := []sealField{{mustPointer(b, "/first-name"), k}, {mustPointer(b, "/last-name"), k}, {mustPointer(b, "/phone-number"), k}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sealData(data, "lead-12", eventID, fields); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanManyPaths is the cost of the path checks of one event with
// 20,000 declared personal paths: linear (a prefix set, a map of wanted
// paths), where it once was quadratic.
func BenchmarkPlanManyPaths(b *testing.B) {
	const n = 20_000
	var data strings.Builder
	ptrs := make([]pointer, n)
	paths := make([]string, n)
	data.WriteString("{")
	for i := range n {
		if i > 0 {
			data.WriteString(",")
		}
		fmt.Fprintf(&data, `"f%d":"v"`, i)
		paths[i] = fmt.Sprintf("/f%d", i)
		ptrs[i] = mustPointer(b, paths[i])
	}
	data.WriteString("}")
	raw := []byte(data.String())
	b.ReportAllocs()
	for b.Loop() {
		if err := checkOverlaps(ptrs); err != nil {
			b.Fatal(err)
		}
		if _, err := findFields(raw, paths); err != nil {
			b.Fatal(err)
		}
	}
}
