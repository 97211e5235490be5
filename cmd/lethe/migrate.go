package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/lethe-store/lethe/migrations"
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
		current, latest, err := schemaStatus(ctx, pool)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema version %d, latest %d\n", current, latest)
		if current != latest {
			return fmt.Errorf("schema is not current: run lethe migrate")
		}
		return nil
	}
	from, to, err := migrate(ctx, pool)
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

func migrate(ctx context.Context, pool *pgxpool.Pool) (from, to int32, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	return migrations.Migrate(ctx, conn.Conn())
}

func schemaStatus(ctx context.Context, pool *pgxpool.Pool) (current, latest int32, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("schema status: %w", err)
	}
	defer conn.Release()
	return migrations.Status(ctx, conn.Conn())
}
