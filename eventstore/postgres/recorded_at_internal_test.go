package postgres

import (
	"testing"
	"time"

	"github.com/lethe-store/lethe/internal/testenv"
)

// The microseconds the append statements hash are exactly recorded_at's,
// whatever the session's time zone (including one with a 45-minute
// offset), as eventstore.ChainLink computes them in Go.
func TestRecordedAtMicrosIsExact(t *testing.T) {
	ctx := testenv.Context(t)
	pool := testenv.Pool(t, testenv.MigratedDatabase(t))
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, tz := range []string{"UTC", "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham"} {
		if _, err := conn.Exec(ctx, `SELECT set_config('TimeZone', $1, false)`, tz); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			var us int64
			var now time.Time
			if err := conn.QueryRow(ctx, `SELECT `+recordedAtMicros+`, now()`).Scan(&us, &now); err != nil {
				t.Fatal(err)
			}
			if us != now.UnixMicro() {
				t.Fatalf("TimeZone %s: the statement hashes %d µs, recorded_at is %d", tz, us, now.UnixMicro())
			}
		}
	}
}
