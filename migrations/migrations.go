// Package migrations holds Lethe's database schema as numbered SQL files,
// embedded in the binary, and applies them with jackc/tern under tern's
// advisory lock, so that several `lethe migrate` or `lethe serve --migrate`
// processes starting at once apply each migration exactly once.
//
// Files are named NNN_name.sql; the part above the line
// "---- create above / drop below ----" migrates up. Migrations are never
// edited once released: a change is a new file.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// VersionTable is the table where tern records the schema version.
const VersionTable = "lethe_schema_version"

// FS returns the embedded migration files.
func FS() fs.FS { return files }

func newMigrator(ctx context.Context, conn *pgx.Conn) (*migrate.Migrator, error) {
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return nil, fmt.Errorf("migrator: %w", err)
	}
	if err := m.LoadMigrations(files); err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return m, nil
}

// Migrate applies every migration not applied yet and returns the schema
// version before and after.
func Migrate(ctx context.Context, conn *pgx.Conn) (from, to int32, err error) {
	m, err := newMigrator(ctx, conn)
	if err != nil {
		return 0, 0, err
	}
	from, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("schema version: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return from, 0, fmt.Errorf("migrate: %w", err)
	}
	to, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return from, 0, fmt.Errorf("schema version: %w", err)
	}
	return from, to, nil
}

// Status returns the database's schema version and the latest version this
// binary knows. The schema is current when they are equal. Unlike Migrate it
// only reads: it takes no lock and creates nothing, so health checks can call
// it with a role that has SELECT only, even while a migration runs.
func Status(ctx context.Context, conn *pgx.Conn) (current, latest int32, err error) {
	names, err := migrate.FindMigrations(files)
	if err != nil {
		return 0, 0, fmt.Errorf("find migrations: %w", err)
	}
	latest = int32(len(names))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, VersionTable).Scan(&exists); err != nil {
		return 0, latest, fmt.Errorf("schema version: %w", err)
	}
	if !exists {
		return 0, latest, nil
	}
	if err := conn.QueryRow(ctx, `SELECT version FROM `+VersionTable).Scan(&current); err != nil {
		return 0, latest, fmt.Errorf("schema version: %w", err)
	}
	return current, latest, nil
}
