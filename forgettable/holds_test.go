package forgettable_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// A legal hold cannot be placed once an erasure has started: the erasure
// left pending by a Vault outage is named in the refusal, and erasing
// again completes it. (Before: the hold was accepted, and the next erase
// destroyed the key all the same, its receipt saying completed.)
func TestHoldRefusedWhileAnErasureIsPending(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seedLead(t, a, "lead-12")

	pendingErasure(t, e, a)
	pending, ok, err := a.Erasure(ctx, casey)
	if err != nil || !ok || pending.Completion != nil {
		t.Fatalf("after the failed erase: %+v, %v, %v; want a pending erasure", pending, ok, err)
	}

	err = a.SetHold(ctx, casey, true, "legal", "litigation")
	var started *forgettable.ErasureStartedError
	if !errors.As(err, &started) || started.Erasure.ID != pending.ID {
		t.Fatalf("hold on a subject with a pending erasure: %v; want an ErasureStartedError naming %x", err, pending.ID)
	}
	done, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"})
	if err != nil || done.Completion == nil || done.ID != pending.ID {
		t.Fatalf("erase again: %+v, %v; want the pending erasure completed", done, err)
	}
}

// pendingErasure erases casey through a second process whose Vault is
// down: the erasure is recorded (the subject fenced) and left pending. It
// returns casey's reference.
func pendingErasure(t *testing.T, e *env, a *instance) keystore.Ref {
	t.Helper()
	ctx := testenv.Context(t)
	dead, err := e.vault.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.SetAddress("http://127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	dead.SetToken(e.vault.Client.Token())
	dead.SetMaxRetries(0)
	down := *e
	down.vault = app.VaultConfig{Client: dead, Mount: e.vault.Mount, Prefix: e.vault.Prefix}
	// The down process cannot read the reference secret: erase by the
	// reference a derived.
	ref, err := a.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := down.instance().ForgetRef(ctx, ref, forgettable.ErasureRequest{Actor: "dpo"}); !errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("erase with Vault down: %v; want ErrUnavailable (pending)", err)
	}
	return ref
}

// A hold and an erasure racing each other never both win: after each pair
// runs concurrently, either the hold was refused or the erasure was (and
// then nothing is erased or pending).
func TestHoldAndEraseRacingNeverBothWin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a, b := e.instance(), e.instance()
	for i := range 25 {
		subject := fmt.Sprintf("racer-%d@example.com", i)
		var holdErr, eraseErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Go(func() { <-start; holdErr = a.SetHold(ctx, subject, true, "legal", "litigation") })
		wg.Go(func() { <-start; _, eraseErr = b.Forget(ctx, subject, forgettable.ErasureRequest{Actor: "dpo"}) })
		close(start)
		wg.Wait()
		er, erased, err := a.Erasure(ctx, subject)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case holdErr == nil && eraseErr == nil:
			t.Fatalf("%s: the hold and the erasure both succeeded (erasure %+v)", subject, er)
		case holdErr == nil && erased:
			t.Fatalf("%s: held, yet an erasure is recorded (%+v); erase error %v", subject, er, eraseErr)
		case holdErr == nil && !errors.Is(eraseErr, forgettable.ErrLegalHold):
			t.Fatalf("%s: held; the erasure failed with %v, want ErrLegalHold", subject, eraseErr)
		case eraseErr == nil && !errors.As(holdErr, new(*forgettable.ErasureStartedError)):
			t.Fatalf("%s: erased; the hold failed with %v, want an ErasureStartedError", subject, holdErr)
		}
	}
}

// The same contract, deterministically: a hold being placed (its
// transaction holds the subject's lock, its row not yet committed) makes
// an erasure wait, and the erasure then sees the hold and is refused.
// Before the lock, the erasure read no uncommitted hold, went ahead, and
// both won.
func TestEraseWaitsForAHoldBeingPlaced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seedLead(t, a, "lead-12")
	ref, err := a.SubjectRef(ctx, casey)
	if err != nil {
		t.Fatal(err)
	}
	// The hold's transaction, as the ledger's SetHold runs it.
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('lethe.subject:' || $1, 0))`, string(ref)); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO legal_holds (subject_ref, held, actor, reason) VALUES ($1, true, 'legal', 'litigation')`, string(ref)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"})
		done <- err
	}()
	deadline := time.Now().Add(15 * time.Second)
	for waiting := 0; waiting == 0; {
		select {
		case err := <-done:
			t.Fatalf("the erasure finished (%v) while a hold was being placed, without waiting for it", err)
		default:
		}
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting == 0 && time.Now().After(deadline) {
			t.Fatal("the erasure neither waited for the hold nor finished within 15 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, forgettable.ErrLegalHold) {
		t.Fatalf("erasure after the hold committed: %v; want ErrLegalHold", err)
	}
	if _, erased, err := a.Erasure(ctx, casey); err != nil || erased {
		t.Fatalf("an erasure is recorded (%v, %v) for a held subject", erased, err)
	}
}
