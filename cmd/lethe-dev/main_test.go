package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

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
