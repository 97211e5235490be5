package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
)

// Limits that cannot be meant and TLS files that do not load stop serve
// before it connects to anything: the database URL points at a closed port.
func TestRunServeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	const unreachable = "postgres://lethe@127.0.0.1:1/lethe?connect_timeout=2"
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name    string
		args    []string
		vars    map[string]string
		wantErr []string // substrings of the error
	}{
		{"negative body limit", nil, map[string]string{"LETHE_MAX_BODY_BYTES": "-1"},
			[]string{"LETHE_MAX_BODY_BYTES", "-1", "want 0 (the default) or more"}},
		{"negative events limit", []string{"--max-events-per-append", "-5"}, nil,
			[]string{"LETHE_MAX_EVENTS_PER_APPEND", "-5", "want 0 (the default) or more"}},
		{"negative event size", nil, map[string]string{"LETHE_MAX_EVENT_BYTES": "-1024"},
			[]string{"LETHE_MAX_EVENT_BYTES", "-1024"}},
		{"events above the store's ceiling", nil, map[string]string{"LETHE_MAX_EVENTS_PER_APPEND": "65537"},
			[]string{"LETHE_MAX_EVENTS_PER_APPEND", "65537", "at most 65536"}},
		{"missing certificate", nil, map[string]string{"LETHE_TLS_CERT": missing, "LETHE_TLS_KEY": missing},
			[]string{"LETHE_TLS_CERT", "LETHE_TLS_KEY", "missing.pem"}},
		{"certificate not PEM", nil, map[string]string{"LETHE_TLS_CERT": garbage, "LETHE_TLS_KEY": garbage},
			[]string{"LETHE_TLS_CERT", "LETHE_TLS_KEY", "PEM"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			vars := map[string]string{"LETHE_DATABASE_URL": unreachable, "LETHE_LISTEN_ADDR": "127.0.0.1:0"}
			for k, v := range tt.vars {
				vars[k] = v
			}
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"serve"}, tt.args...), env(vars), nil, &stdout, &stderr)
			if err == nil {
				t.Fatalf("got nil, want an error containing %q", tt.wantErr)
			}
			for _, want := range tt.wantErr {
				if got := err.Error(); !strings.Contains(got, want) {
					t.Errorf("error: got %q, want it to contain %q", got, want)
				}
			}
			if strings.Contains(stderr.String(), "lethe serving") {
				t.Errorf("stderr: got %q, want no serving line", stderr.String())
			}
		})
	}
	// The store's ceiling itself is accepted: serve gets as far as the
	// database.
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"serve"}, env(map[string]string{"LETHE_DATABASE_URL": unreachable, "LETHE_MAX_EVENTS_PER_APPEND": "65536"}), nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("65536 events per append: got %v, want the database's error (the limit accepted)", err)
	}
}

// A Vault that does not answer at start is a warning, not a failure:
// serve starts, and says so before serving.
func TestRunServeWarnsOfUnhealthyVault(t *testing.T) {
	s := startServe(t, map[string]string{
		"LETHE_DATABASE_URL":      testenv.MigratedDatabase(t),
		"LETHE_VAULT_ADDR":        "http://127.0.0.1:1", // nothing listens there
		"LETHE_VAULT_TOKEN":       "not-a-real-token",
		"LETHE_VAULT_TIMEOUT":     "1s",
		"LETHE_VAULT_MAX_RETRIES": "0",
		"LETHE_LISTEN_ADDR":       "127.0.0.1:0",
		"LETHE_SHUTDOWN_TIMEOUT":  "5s",
	})
	if s.startErr != nil {
		t.Fatalf("serve: %v; want it to serve; stderr:\n%s", s.startErr, s.stderr.String())
	}
	out := s.stderr.String()
	warning := strings.Index(out, `level=WARN msg="Vault is not healthy`)
	if warning < 0 || warning > strings.Index(out, `msg="lethe serving"`) {
		t.Errorf("stderr: got %q, want a warning that Vault is not healthy before the serving line", out)
	}
	s.stop(t)
}
