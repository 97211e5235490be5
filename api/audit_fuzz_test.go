package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api/wire"
)

// The audit export's hand-written JSON is encoding/json's: any string
// (actors, request ids, names are free text) encodes the same, and a
// record line decodes back to what was written.
func FuzzAuditJSONString(f *testing.F) {
	for _, s := range []string{"", "cli:alice", `a"b\c`, "tab\tnl\nnul\x00", "\u2028\u2029", "caf\xc3\xa9", "bad\xffutf8", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != strings.TrimSuffix(want.String(), "\n") {
			t.Fatalf("appendJSONString(%q) = %s, want %s", s, got, want.String())
		}
		rec := AuditRecord{ID: "audit_log:1", At: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), Kind: "policy.put", Actor: s, RequestID: s,
			Stream: "s-1", FromVersion: 0, ToVersion: 2, Streams: []string{s}, SubjectRefs: []string{s}, Link: []byte{1, 2}, Details: []byte(`{"a":1}`)}
		line := appendAuditNDJSON(nil, &rec)
		if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
			t.Fatalf("record line %q: not one line", line)
		}
		var back wire.AuditRecord
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatalf("record line %q: %v", line, err)
		}
		var norm string
		_ = json.Unmarshal(want.Bytes(), &norm) // invalid UTF-8 became U+FFFD
		if (s != "" && (back.Actor != norm || back.RequestID != norm)) || back.Streams[0] != norm || *back.ToVersion != 2 ||
			back.Link != "0102" || !back.At.Equal(rec.At) || string(back.Details) != `{"a":1}` {
			t.Fatalf("record line %q decodes to %+v", line, back)
		}
	})
}
