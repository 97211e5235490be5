package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Within the server's default limits a page can be large (1,000 events of
// up to 1 MiB): the Go client reads 2xx answers whole, with no cap of its
// own (it once cut them at 64 MiB and failed to decode the rest).
func TestClientReadsAPageTheServerAllows(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	big := json.RawMessage(`{"blob":"` + strings.Repeat("x", 1000_000) + `"}`)
	for range 23 { // 69 events of 1 MB: 3 per append (4 MiB body limit)
		evs := make([]wire.NewEvent, 3)
		for j := range evs {
			evs[j] = wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "blob", Data: big}
		}
		if _, err := tk.writer.Append(ctx, "blob-1", wire.Any(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	page, err := tk.reader.ReadStream(ctx, "blob-1", client.ReadOptions{Limit: 100})
	if err != nil {
		t.Fatalf("read a 69-event page (about 69 MB, within the server's limits): %v", err)
	}
	if len(page.Events) != 69 {
		t.Errorf("got %d events, want 69", len(page.Events))
	}
}
