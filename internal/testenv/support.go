package testenv

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// PGDump returns a plain-text dump of a whole database: what a backup
// would hold (tests look for personal data in it).
func PGDump(tb testing.TB, dbURL string) []byte {
	tb.Helper()
	bin, err := exec.LookPath("pg_dump")
	if err != nil {
		dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
		if len(dirs) == 0 {
			tb.Fatal("no pg_dump")
		}
		bin = dirs[len(dirs)-1]
	}
	out, err := exec.Command(bin, "--no-owner", dbURL).Output()
	if err != nil {
		tb.Fatalf("pg_dump: %v", err)
	}
	return out
}

// SyncBuffer is a bytes.Buffer safe for a writer and a reader in different
// goroutines (a server logs while a test reads its log).
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Eventually retries check every 20 ms until it passes, and fails the
// test with its last error after timeout: for what happens
// asynchronously (projections catching up, listeners hearing a change).
// Give generous timeouts: a loaded CI machine is slow, and a passing check
// returns at once.
func Eventually(tb testing.TB, what string, timeout time.Duration, check func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
