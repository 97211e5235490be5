package forgettable_test

import (
	"bytes"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Events read a while before they are opened (a subscription's read-ahead
// batch, a projection's batch) carry the ledger's verdict of their read:
// Open asks the ledger afresh, so nothing is decrypted for a subject whose
// erasure committed in between — even by a process that still has the key
// cached (its erasure announcement not yet heard).
func TestOpenAfterAnErasureShowsForgotten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a, b := e.instance(), e.instance()
	seedLead(t, a, "lead-12")
	read(t, b, "lead-12", forgettable.Personal) // b caches casey's key
	raw, err := b.events.ReadStream(ctx, "lead-12", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Forget(ctx, casey, forgettable.ErasureRequest{Actor: "dpo"}); err != nil {
		t.Fatal(err)
	}
	opened, err := b.Open(ctx, raw, forgettable.Personal)
	if err != nil {
		t.Fatal(err)
	}
	forgotten := 0
	for _, ev := range opened {
		for _, s := range []string{"Casey", "555-"} {
			if bytes.Contains(ev.Data, []byte(s)) {
				t.Errorf("%s/%d opened after the erasure shows %q: %s", ev.StreamID, ev.Version, s, ev.Data)
			}
		}
		for _, r := range ev.Redacted {
			if r.Reason == forgettable.ReasonForgotten {
				forgotten++
			}
		}
	}
	if forgotten == 0 {
		t.Error("no field opened after the erasure reads forgotten")
	}
}
