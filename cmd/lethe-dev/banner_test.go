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
		st := localState{AdminToken: "admin", Token: "writer", ReaderToken: "reader", AuditorToken: "auditor"}
		printBanner(&buf, "http://127.0.0.1:8080", st, "postgres://x", "http://127.0.0.1:8200", tc.root, tc.root+"/.lethe", tc.root+"/.lethe/pg")
		out := buf.String()
		for _, want := range []string{
			"from the\n", "checkout's root directory", tc.cd,
			"safe retry (200) until casey is erased; after that it is\n  # 409 subject-erased",
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

// A newcomer's first commands read the lead that make run loaded: its
// state at versions 2 and 6, its history, then the erasure and the state
// again; the append comes later, said to be done already.
func TestBannerTour(t *testing.T) {
	var buf bytes.Buffer
	printBanner(&buf, "http://127.0.0.1:8080", localState{}, "postgres://x", "http://127.0.0.1:8200", "/r", "/r/.lethe", "/r/.lethe/pg")
	out := buf.String()
	last := -1
	for _, step := range []string{
		"# The seed's lead, stream lead-12, is loaded",
		`/v1/streams/lead-12/state?version=2"`,
		`/v1/streams/lead-12/state?version=6"`,
		`/v1/streams/lead-12/history"`,
		"/v1/subjects/casey.davis@example.com/export",
		"/v1/subjects/casey.davis@example.com/erase",
		`/v1/streams/lead-12/state" -H "Authorization: Bearer $LETHE_TOKEN"`,
		"which make run sent already",
		"-d @docs/examples/lead-12.json",
		`/v1/audit/export" -H "Authorization: Bearer $LETHE_AUDITOR_TOKEN"`,
		"bin/lethe verify",
	} {
		i := strings.Index(out[last+1:], step)
		if i < 0 {
			t.Fatalf("banner: %q missing, or not after the steps before it:\n%s", step, out)
		}
		last += 1 + i
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "  curl ") {
			if !strings.Contains(line, "state?version=2") {
				t.Errorf("banner: the first command is %q, want the state at version 2", line)
			}
			break
		}
	}
}
