package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/client"
)

// A page within the server's limits can be large (1,000 events of up to
// 1 MiB): the client decodes 2xx answers as they stream in, with no cap of
// its own (it once cut them at 64 MiB and failed to decode the rest). A
// server stand-in sends a 70 MB page: this is the client's own behaviour.
func TestClientReadsALargePage(t *testing.T) {
	blob := strings.Repeat("x", 1_000_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"events":[`)
		for i := range 70 {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, `{"id":"0190a6f2-6f3c-7b1e-8a4f-3c2d1e0f9a%02d","streamId":"blob-1","version":%d,"position":%d,"type":"blob","data":{"blob":"%s"},"metadata":{},"recordedAt":"2026-12-01T00:00:00Z","redacted":[]}`, i, i, 100+i, blob)
		}
		fmt.Fprint(w, `],"next":null}`)
	}))
	defer srv.Close()
	page, err := client.New(srv.URL, "t", srv.Client()).ReadStream(context.Background(), "blob-1", client.ReadOptions{Limit: 100})
	if err != nil {
		t.Fatalf("read a 70 MB page: %v", err)
	}
	if len(page.Events) != 70 || page.Events[69].Version != 69 || len(page.Events[69].Data) < 1_000_000 {
		t.Errorf("got %d events", len(page.Events))
	}
}
