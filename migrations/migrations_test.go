package migrations_test

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/migrations"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(testenv.Context(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(testenv.Context(t)) })
	return conn
}

// Status only reads: on a fresh database it reports version 0 and creates
// nothing, so health checks can run it with a read-only role.
func TestStatusIsReadOnly(t *testing.T) {
	t.Parallel()
	conn := connect(t, testenv.Database(t))
	ctx := testenv.Context(t)
	current, latest, err := migrations.Status(ctx, conn)
	if err != nil || current != 0 || latest < 1 {
		t.Fatalf("Status on a fresh database = %d, %d, %v; want 0, >=1, nil", current, latest, err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, migrations.VersionTable).Scan(&exists); err != nil || exists {
		t.Fatalf("Status created the version table (exists=%v, err=%v)", exists, err)
	}
}

// Several processes migrating at once (lethe serve --migrate on many
// replicas) apply each migration once.
func TestConcurrentMigrate(t *testing.T) {
	t.Parallel()
	url := testenv.Database(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(testenv.Context(t), url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(testenv.Context(t))
			_, _, err = migrations.Migrate(testenv.Context(t), conn)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	current, latest, err := migrations.Status(testenv.Context(t), connect(t, url))
	if err != nil || current != latest {
		t.Fatalf("after concurrent migrations: version %d of %d, %v", current, latest, err)
	}
}
