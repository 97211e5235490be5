package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/lethe-store/lethe/api"
	projpg "github.com/lethe-store/lethe/projection/postgres"
)

const projectionUsage = `Usage:
  lethe projection status                      every projection's checkpoint, lag and pending rebuild
  lethe projection rebuild NAME [--from POS]   rebuild from scratch, or from a position of $all

The running servers pick a rebuild up at their next batch. Built-in projections:
analytics, lookup.
`

func runProjection(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, projectionUsage)
		return errors.New("no projection command given")
	}
	cmd, rest := args[0], args[1:]
	var name string
	if cmd == "rebuild" {
		if len(rest) == 0 || strings.HasPrefix(rest[0], "-") {
			fmt.Fprint(stderr, projectionUsage)
			return errors.New("rebuild needs a projection name")
		}
		name, rest = rest[0], rest[1:]
	}
	var c config
	var from int
	f := newFlagSet("projection "+cmd, getenv, stderr)
	c.bindDatabase(f)
	f.fs.IntVar(&from, "from", 0, "rebuild from this position of $all (0: from scratch, emptying the read model)")
	if err := f.parse(rest); err != nil {
		return err
	}
	if cmd != "status" && cmd != "rebuild" {
		fmt.Fprint(stderr, projectionUsage)
		return fmt.Errorf("unknown projection command %q", cmd)
	}
	if from < 0 {
		return errors.New("--from: want 0 or a position")
	}
	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if cmd == "rebuild" {
		st, err := projpg.Statuses(ctx, pool)
		if err != nil {
			return err
		}
		known := name == projpg.AnalyticsName || name == projpg.LookupName
		for _, s := range st {
			known = known || s.Name == name
		}
		if !known {
			return fmt.Errorf("no projection %q has run on this database (built-in: %s, %s)", name, projpg.AnalyticsName, projpg.LookupName)
		}
		if err := projpg.RequestRebuild(ctx, pool, name, int64(from)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rebuild of %s requested (from position %d); the servers apply it at their next batch\n", name, from)
		return nil
	}
	st, err := projpg.Statuses(ctx, pool)
	if err != nil {
		return err
	}
	return printJSON(stdout, api.ProjectionStatuses(st))
}
