package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/devenv"
)

func TestPrefixWriter(t *testing.T) {
	var buf bytes.Buffer
	w := newPrefixWriter(&buf, "==> ")
	for _, s := range []string{"one\ntw", "o\n", "", "three\nfour\n"} {
		n, err := w.Write([]byte(s))
		if err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if got, want := buf.String(), "==> one\n==> two\n==> three\n==> four\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRunUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"env"}, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "LETHE_TEST_DATABASE_URL") {
		t.Errorf("env: %v, %q", err, stdout.String())
	}
	var code exitCode
	if err := run(context.Background(), nil, &stdout, &stderr); !errors.As(err, &code) || code != 2 {
		t.Errorf("no arguments: got %v, want exit status 2", err)
	}
	if err := run(context.Background(), []string{"nope"}, &stdout, &stderr); err == nil {
		t.Error("unknown command: no error")
	}
	if err := run(context.Background(), []string{"test"}, &stdout, &stderr); err == nil {
		t.Error("test without a command: no error")
	}
}

// With both services given, "test" starts nothing and passes them on.
func TestRunTestReusesServices(t *testing.T) {
	t.Setenv("LETHE_TEST_DATABASE_URL", "postgres://given")
	t.Setenv("LETHE_TEST_VAULT_ADDR", "http://given")
	t.Setenv("LETHE_TEST_VAULT_TOKEN", "token")
	var stdout, stderr bytes.Buffer
	script := `test "$LETHE_TEST_DATABASE_URL" = postgres://given && test "$LETHE_TEST_VAULT_ADDR" = http://given && echo hello && exit 7`
	err := run(context.Background(), []string{"test", "--", "sh", "-c", script}, &stdout, &stderr)
	var code exitCode
	if !errors.As(err, &code) || code != 7 {
		t.Fatalf("got %v, want exit status 7; stderr:\n%s", err, stderr.String())
	}
	if stdout.String() != "hello\n" {
		t.Errorf("stdout %q, want the command's output", stdout.String())
	}
}

func TestRunTestStartsServices(t *testing.T) {
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devenv.VaultBinary(root); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	t.Setenv("LETHE_TEST_DATABASE_URL", "")
	t.Setenv("LETHE_TEST_VAULT_ADDR", "")
	var stdout, stderr bytes.Buffer
	script := `psql -X -At -d "$LETHE_TEST_DATABASE_URL" -c 'SELECT 41 + 1' &&
		test -n "$LETHE_TEST_VAULT_ADDR" && test -n "$LETHE_TEST_VAULT_TOKEN"`
	if err := run(context.Background(), []string{"test", "--", "sh", "-c", script}, &stdout, &stderr); err != nil {
		t.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "42" {
		t.Errorf("psql printed %q, want 42", got)
	}
	for _, want := range []string{"==> starting PostgreSQL", "==> starting a Vault dev server", "==> stopping PostgreSQL"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr.String())
		}
	}
}

// loadSeedLead appends the repository's lead-12.json with the demo token;
// an existing or erased stream is fine and said so in one line.
func TestLoadSeedLead(t *testing.T) {
	root, err := devenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		status int
		body   string
		want   string
	}{
		{http.StatusCreated, `{"streamId":"lead-12","firstVersion":0,"lastVersion":6}`, "loaded the seed's lead stream lead-12: 7 events"},
		{http.StatusOK, `{"streamId":"lead-12","firstVersion":0,"lastVersion":6}`, "lead-12 is loaded already"},
		{http.StatusConflict, `{"type":"https://lethe.dev/problems/wrong-expected-version","status":409,"currentVersion":7,"events":[]}`, "there from a previous run: not loaded again"},
		{http.StatusConflict, `{"type":"https://lethe.dev/problems/subject-erased","status":409}`, "casey erased (delete .lethe/ to start from scratch)"},
		{http.StatusServiceUnavailable, `{"type":"https://lethe.dev/problems/key-store-unavailable","title":"Key store unavailable","status":503}`, "could not load the seed's lead stream lead-12: POST /v1/streams/lead-12/events: 503 Key store unavailable"},
	} {
		var got wire.AppendRequest
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			if r.Method != http.MethodPost || r.URL.Path != "/v1/streams/lead-12/events" || r.Header.Get("Authorization") != "Bearer writer-token" || json.Unmarshal(b, &got) != nil {
				t.Errorf("request %s %s %q %s", r.Method, r.URL.Path, r.Header.Get("Authorization"), b)
			}
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		}))
		var progress bytes.Buffer
		loadSeedLead(context.Background(), hs.URL, "writer-token", root, &progress)
		hs.Close()
		if out := progress.String(); !strings.Contains(out, tc.want) || strings.Count(out, "\n") != 1 {
			t.Errorf("%d: progress %q, want one line with %q", tc.status, out, tc.want)
		}
		if got.ExpectedVersion.Value() != -1 || len(got.Events) != 7 || got.Events[0].Type != "lead-initialized" || len(got.Events[0].PersonalData) != 1 {
			t.Errorf("%d: appended %+v, want docs/examples/lead-12.json", tc.status, got)
		}
	}
}
