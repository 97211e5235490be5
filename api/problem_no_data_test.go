package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// a 4xx problem must not quote the request's data (jsonError in
// api/events.go refuses to, "a subject id used as a key, say"), but the
// errors of forgettable passed through s.fail as detail do: the reserved
// value check names the path by the data's own object keys, and a bad
// JSON Pointer is quoted whole.
func TestProblemDetailDoesNotQuoteData(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	id := eventstore.NewEventID().String()
	for _, tc := range []struct{ name, body, secret string }{
		{"reserved value under a personal key", `{"events":[{"id":"` + id + `","type":"t","data":{"contacts":{"casey.davis@example.com":"lethe:v1:x"}}}]}`, "casey.davis@example.com"},
		{"bad pointer naming a person", `{"events":[{"id":"` + id + `","type":"t","data":{"a":1},"personalData":[{"subject":"s","paths":["casey.davis@example.com"]}]}]}`, "casey.davis@example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/streams/s-1/events", strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tk.secrets[wire.RoleWriter])
			req.Header.Set("Content-Type", "application/json")
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 4 || strings.Contains(string(body), tc.secret) {
				t.Errorf("got %d %s; want a 4xx without %q", resp.StatusCode, body, tc.secret)
			}
		})
	}
}
