package forgettable

import "testing"

func BenchmarkOpenData(b *testing.B) {
	k := testKey(b, "casey", 1)
	data := []byte(`{"first-name":"Casey","last-name":"Davis","phone-number":"555-8101","timestamp":"2020-05-20T12:32:08.24Z","seq":12345}`)
	sealed, err := sealData(data, "lead-12", eventID, []sealField{{mustPointer(b, "/first-name"), k}, {mustPointer(b, "/last-name"), k}, {mustPointer(b, "/phone-number"), k}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := openData(sealed, "lead-12", eventID, keysOf(k)); err != nil {
			b.Fatal(err)
		}
	}
}
