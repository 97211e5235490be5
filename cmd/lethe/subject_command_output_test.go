package main

import (
	"bytes"
	"maps"
	"strings"
	"testing"
)

// runWith runs lethe with e's settings changed by change, and returns its
// standard output, its standard error and its error.
func (e *cliEnv) runWith(change map[string]string, args ...string) (stdout, stderr string, err error) {
	e.t.Helper()
	vars := maps.Clone(e.vars)
	maps.Copy(vars, change)
	var out, errOut bytes.Buffer
	err = run(e.ctx, args, env(vars), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// The subject commands run no projections: a small pool (pool_max_conns
// in the URL, as an operator may give a one-shot command) is no reason to
// print the server's warning about the projections' connections on the
// command's standard error. Before the composition root they printed
// nothing there.
func TestSubjectCommandWithSmallPoolWarnsOfNoProjections(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	sep := "?"
	if strings.Contains(e.dbURL, "?") {
		sep = "&"
	}
	_, stderr, err := e.runWith(map[string]string{"LETHE_DATABASE_URL": e.dbURL + sep + "pool_max_conns=2"},
		"subject", "status", "--subject", "ada@example.com")
	if err != nil {
		t.Fatalf("subject status: %v\n%s", err, stderr)
	}
	if stderr != "" {
		t.Errorf("subject status printed on stderr:\n%s\nwant nothing (it runs no projections)", stderr)
	}
}

// A subject command with Vault down fails with the key store's error; it
// does not say it is "serving anyway (see /readyz)" — it serves nothing.
// Before the composition root it made no startup health check at all.
func TestSubjectCommandWithVaultDownDoesNotClaimToServe(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	stdout, stderr, err := e.runWith(map[string]string{"LETHE_VAULT_ADDR": "http://127.0.0.1:1", "LETHE_VAULT_MAX_RETRIES": "0"},
		"subject", "status", "--subject", "ada@example.com")
	if err == nil {
		t.Fatalf("subject status with Vault down: no error; printed %q", stdout)
	}
	for _, serverTalk := range []string{"serving anyway", "/readyz"} {
		if strings.Contains(stderr, serverTalk) {
			t.Errorf("subject status with Vault down printed %q:\n%s\nwant only the command's error (%v)", serverTalk, stderr, err)
		}
	}
}

// The subject commands never checked the schema version: with a migration
// pending (the binary upgraded, lethe migrate not run yet) an operator
// could still answer an erasure request or a status query. docs/operations.md
// says only `lethe serve` refuses a schema that is not current; the
// composition root now makes every subject command refuse it too.
func TestSubjectCommandRunsWithAMigrationPending(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	if _, err := e.pool.Exec(e.ctx, `UPDATE lethe_schema_version SET version = version - 1`); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := e.runWith(nil, "subject", "status", "--subject", "ada@example.com")
	if err != nil {
		t.Fatalf("subject status with a migration pending: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, `"not erased"`) {
		t.Errorf("subject status: %q, want the not-erased document", stdout)
	}
}
