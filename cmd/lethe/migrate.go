package main

import (
	"context"
	"fmt"
	"io"

	"github.com/lethe-store/lethe/internal/app"
)

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var c config
	var statusOnly bool
	f := newFlagSet("migrate", getenv, stderr)
	c.bindDatabase(f)
	f.fs.BoolVar(&statusOnly, "status", false, "only report the schema version")
	if err := f.parse(args); err != nil {
		return err
	}
	pool, err := openPool(ctx, c.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if statusOnly {
		current, latest, err := app.SchemaStatus(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema version %d, latest %d\n", current, latest)
		if current != latest {
			return fmt.Errorf("schema is not current: run lethe migrate")
		}
		return nil
	}
	from, to, err := app.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(stdout, "schema is current (version %d)\n", to)
	} else {
		fmt.Fprintf(stdout, "migrated schema from version %d to %d\n", from, to)
	}
	return nil
}
