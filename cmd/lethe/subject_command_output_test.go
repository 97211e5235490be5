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

// A subject command refuses a schema that is not the one it was built
// for, before it does anything, with a message that says what to run: an
// erasure run against an older schema could destroy the key and then fail
// to record its completion. (Before the composition root the commands did
// not check, and failed, if at all, half-way.)
func TestSubjectCommandRefusesASchemaNotCurrent(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	if _, err := e.pool.Exec(e.ctx, `UPDATE lethe_schema_version SET version = version - 1`); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := e.runWith(nil, "subject", "erase", "--subject", "ada@example.com")
	if err == nil || !strings.Contains(err.Error(), "lethe migrate") {
		t.Fatalf("subject erase with a migration pending: %v (stdout %q, stderr %q); want a refusal naming lethe migrate", err, stdout, stderr)
	}
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM erasures`).Scan(&n); err != nil || n != 0 {
		t.Errorf("erasures after the refusal: %d, %v; want none", n, err)
	}
}
