package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
)

// lethe projection: a rebuild of a built-in is recorded for the servers to
// pick up; an unknown name is refused; status lists the checkpoints.
func TestProjectionCommands(t *testing.T) {
	t.Parallel()
	ctx := testenv.Context(t)
	dbURL := testenv.MigratedDatabase(t)
	vars := env(map[string]string{"LETHE_DATABASE_URL": dbURL})
	cli := func(args ...string) (string, error) {
		var o, e bytes.Buffer
		err := run(ctx, append([]string{"projection"}, args...), vars, nil, &o, &e)
		return o.String() + e.String(), err
	}
	if out, err := cli("rebuild", "nope"); err == nil || !strings.Contains(err.Error(), "no projection") {
		t.Errorf("rebuild of an unknown projection = %v (%s)", err, out)
	}
	if out, err := cli("rebuild", "analytics", "--from", "-1"); err == nil {
		t.Errorf("negative --from accepted: %s", out)
	}
	// Ahead of the checkpoint (none yet: position 0): it would skip events,
	// erasure records included.
	if out, err := cli("rebuild", "lookup", "--from", "4096"); err == nil || !strings.Contains(err.Error(), "move a projection back") {
		t.Fatalf("rebuild lookup --from 4096 with no checkpoint = %v (%s); want it refused", err, out)
	}
	if out, err := cli("rebuild", "lookup"); err != nil || !strings.Contains(out, "from position 0") {
		t.Fatalf("rebuild lookup = %v (%s)", err, out)
	}
	out, err := cli("status")
	if err != nil {
		t.Fatal(err)
	}
	var st []struct {
		Name           string `json:"name"`
		Position       int64  `json:"position"`
		RebuildPending bool   `json:"rebuildPending"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st) != 1 || st[0].Name != "lookup" || st[0].Position != 0 || !st[0].RebuildPending {
		t.Errorf("status = %s (%v)", out, err)
	}
	if out, err := cli("frobnicate"); err == nil {
		t.Errorf("unknown command accepted: %s", out)
	}
}
