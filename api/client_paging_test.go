package api_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Paging backward with the Go client as docs/api.md says (pass next as
// from, same direction) reaches version 0: a next of 0 is sent as from=0,
// not taken for "from the end" (which would loop over the same pages).
func TestClientPagesBackwardToVersionZero(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	for i := range 5 {
		e := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "t", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
		if _, err := tk.writer.Append(ctx, "order-1", wire.Any(), e); err != nil {
			t.Fatal(err)
		}
	}
	opts := client.ReadOptions{Backward: true, Limit: 2}
	var versions []int64
	for range 5 { // 3 pages are enough; stop a loop
		p, err := tk.reader.ReadStream(ctx, "order-1", opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Events {
			versions = append(versions, e.Version)
		}
		if p.Next == nil {
			break
		}
		opts.From = p.Next
	}
	if fmt.Sprint(versions) != "[4 3 2 1 0]" {
		t.Errorf("paging backward by next: versions %v, want [4 3 2 1 0]", versions)
	}
}
