package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/eventstore/postgres"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/app"
	"github.com/lethe-store/lethe/internal/devenv"
	"github.com/lethe-store/lethe/keystore/vault"
)

// withVault starts a private Vault dev server for a suite and returns a
// client with its root token.
func withVault(ctx context.Context, b *bench) (*vaultapi.Client, func(), error) {
	root, err := devenv.RepoRoot()
	if err != nil {
		return nil, nil, err
	}
	bin, err := devenv.VaultBinary(root)
	if err != nil {
		return nil, nil, err
	}
	v, err := devenv.StartVault(ctx, devenv.VaultOptions{Bin: bin, Log: b.out})
	if err != nil {
		return nil, nil, err
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = v.Stop(sctx)
	}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr()
	client, err := vaultapi.NewClient(cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	client.SetToken(v.RootToken())
	return client, stop, nil
}

// shredding is a suite's crypto-shredding stack: a private Vault, and
// Lethe assembled on it and the bench database as `lethe serve` assembles
// it (app.Open), not running until a suite runs it.
type shredding struct {
	app    *app.App
	keys   *vault.Store
	events *postgres.Store
	store  *forgettable.Store
	stop   func()
}

// newShredding opens the stack; its log goes to log (nil: warnings to
// the bench's output).
func newShredding(ctx context.Context, b *bench, log *slog.Logger) (*shredding, error) {
	client, stopVault, err := withVault(ctx, b)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(b.out, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.Open(ctx, app.Config{Logger: log, Pool: b.pool, Vault: app.VaultConfig{Client: client}})
	if err != nil {
		stopVault()
		return nil, err
	}
	return &shredding{app: a, keys: a.Vault(), events: a.Events(), store: a.Store(),
		stop: func() { a.Close(); stopVault() }}, nil
}

// personalEvent is the seed's contact-details-updated event with its three
// personal fields declared for subject.
func personalEvent(i int, subject string) forgettable.Event {
	return forgettable.Event{EventData: eventData(i), PersonalData: []forgettable.PersonalData{
		{Subject: subject, Paths: []string{"/first-name", "/last-name", "/phone-number"}},
	}}
}

func benchForgettable(ctx context.Context, b *bench) ([]figure, error) {
	sh, err := newShredding(ctx, b, nil)
	if err != nil {
		return nil, err
	}
	defer sh.stop()
	events, store := sh.events, sh.store
	var figs []figure

	// Encrypted append (3 personal fields per event, warm key cache)
	// against the same append without encryption.
	for _, workers := range []int{1, 8} {
		for w := range workers { // warm every writer's subject key
			if _, err := store.Append(ctx, fmt.Sprintf("warm%d-%d", workers, w), eventstore.Any, personalEvent(0, fmt.Sprintf("subject-%d@example.com", w))); err != nil {
				return nil, err
			}
		}
		plain, sealed, err := paired(ctx, workers, b.opts.duration, func(ctx context.Context, w, i int) (int, error) {
			_, err := events.AppendToStream(ctx, fmt.Sprintf("plain%d-%d", workers, w), eventstore.Exact(int64(i)-1), eventData(i))
			return 1, err
		}, func(ctx context.Context, w, i int) (int, error) {
			_, err := store.Append(ctx, fmt.Sprintf("sealed%d-%d", workers, w), eventstore.Exact(int64(i)-1), personalEvent(i, fmt.Sprintf("subject-%d@example.com", w)))
			return 1, err
		})
		if err != nil {
			return nil, err
		}
		figs = append(figs, compare(fmt.Sprintf("encrypted_append_3_fields_%dw", workers), "events/s", sealed,
			fmt.Sprintf("append_unencrypted_%dw", workers), plain, 0.8))
	}

	// Read and decrypt a 10,000-event stream against the event store's
	// own ReadStream of the same rows (no decryption, no redaction).
	const streamLen = 10_000
	for v := 0; v < streamLen; v += 1000 {
		batch := make([]forgettable.Event, 1000)
		for k := range batch {
			batch[k] = personalEvent(v+k, "reader@example.com")
		}
		if _, err := store.Append(ctx, "sealed-long", eventstore.Exact(int64(v)-1), batch...); err != nil {
			return nil, err
		}
	}
	readAll := func(access forgettable.Access, raw bool) (int, error) {
		n := 0
		for from := int64(0); ; {
			var got int
			if raw {
				evs, err := events.ReadStream(ctx, "sealed-long", eventstore.ReadStreamOptions{From: from})
				if err != nil {
					return 0, err
				}
				got = len(evs)
			} else {
				evs, err := store.ReadStream(ctx, "sealed-long", eventstore.ReadStreamOptions{From: from}, access)
				if err != nil {
					return 0, err
				}
				got = len(evs)
			}
			n += got
			if got < eventstore.DefaultReadLimit {
				return n, nil
			}
			from += int64(got)
		}
	}
	if _, err := readAll(forgettable.Personal, false); err != nil { // warm the key cache
		return nil, err
	}
	base, dec, err := paired(ctx, 1, b.opts.duration, func(ctx context.Context, _, _ int) (int, error) {
		return readAll(forgettable.Personal, true)
	}, func(ctx context.Context, _, _ int) (int, error) {
		return readAll(forgettable.Personal, false)
	})
	if err != nil {
		return nil, err
	}
	f := compare("read_decrypt_stream_10k_events", "events/s", dec, "read_stream_10k_no_decryption", base, 0.7)
	f.Note = "3 sealed fields per event, warm key cache"
	figs = append(figs, f)

	// Cold cache: the first event of new subjects, a Vault key creation
	// (check-and-set write) each.
	cold, err := throughput(ctx, make([]int, 1), b.opts.duration, func(ctx context.Context, w, i int) (int, error) {
		_, err := store.Append(ctx, fmt.Sprintf("cold-%d", i), eventstore.NoStream, personalEvent(i, fmt.Sprintf("new-%d-%d@example.com", time.Now().UnixNano(), i)))
		return 1, err
	})
	if err != nil {
		return nil, err
	}
	f = figure{Name: "append_new_subject_cold_cache_1w", Value: cold.perSecond(), Unit: "events/s",
		Note: fmt.Sprintf("p50 %v p99 %v (Vault key creation included)", cold.percentile(0.5).Round(time.Microsecond), cold.percentile(0.99).Round(time.Microsecond))}
	figs = append(figs, f)

	// Erase latency: subjects with 10 events each.
	n := 200
	if b.opts.quick {
		n = 20
	}
	for i := range n {
		batch := make([]forgettable.Event, 10)
		for k := range batch {
			batch[k] = personalEvent(k, fmt.Sprintf("erase-%d@example.com", i))
		}
		if _, err := store.Append(ctx, fmt.Sprintf("erase-%d", i), eventstore.NoStream, batch...); err != nil {
			return nil, err
		}
	}
	lat := make([]time.Duration, 0, n)
	for i := range n {
		t0 := time.Now()
		if _, err := store.Forget(ctx, fmt.Sprintf("erase-%d@example.com", i), forgettable.ErasureRequest{Actor: "bench"}); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
	figs = append(figs,
		figure{Name: "erase_latency_p50", Value: float64(p50.Microseconds()) / 1000, Unit: "ms", Note: fmt.Sprintf("%d erasures, 10 events each", n)},
		figure{Name: "erase_latency_p99", Value: float64(p99.Microseconds()) / 1000, Unit: "ms"})
	return figs, nil
}
