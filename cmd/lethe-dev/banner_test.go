package main

import (
	"bytes"
	"strings"
	"testing"
)

// The banner says where to run its commands (they use relative paths),
// and that a repeated append stops being a safe retry once casey is erased.
func TestBanner(t *testing.T) {
	for _, tc := range []struct{ root, cd string }{
		{"/home/ada/lethe", "  cd /home/ada/lethe\n"},
		{"/home/ada/my lethe's", `  cd '/home/ada/my lethe'\''s'` + "\n"},
	} {
		var buf bytes.Buffer
		st := localState{AdminToken: "admin", Token: "writer", ReaderToken: "reader"}
		printBanner(&buf, "http://127.0.0.1:8080", st, "postgres://x", "http://127.0.0.1:8200", tc.root, tc.root+"/.lethe", tc.root+"/.lethe/pg")
		out := buf.String()
		for _, want := range []string{
			"from the\n", "checkout's root directory", tc.cd,
			"safe retry (200) until\n  # casey is erased; after that it is 409 subject-erased",
			"-d @docs/examples/lead-12.json", ". .lethe/env",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("banner: got\n%s\nwant it to contain %q", out, want)
			}
		}
		if cd, export := strings.Index(out, tc.cd), strings.Index(out, "export LETHE_URL"); cd > export {
			t.Errorf("banner: the cd comes after the exports:\n%s", out)
		}
	}
}
