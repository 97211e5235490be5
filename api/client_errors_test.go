package api_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
)

// Client mistakes must be 4xx problems with a type the docs list, never
// 500 internal (which also logs an error line per request and tells the
// client to call the operator).
func TestClientErrorsAreNot500(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	id := func() string { return eventstore.NewEventID().String() }
	appendBody := func(data string) string {
		return `{"events":[{"id":"` + id() + `","type":"t","data":` + data + `}]}`
	}
	writer, reader := tk.secrets[wire.RoleWriter], tk.secrets[wire.RoleReader]
	for _, tc := range []struct {
		name, method, path, token, body string
		want                            string // the problem type
	}{
		{"token name over 200 bytes", http.MethodPost, "/v1/tokens", d.adminToken,
			`{"name":"` + strings.Repeat("n", 201) + `","roles":["reader"]}`, "invalid-request"},
		// PostgreSQL cannot store a NUL in text or jsonb (22021, 22P05).
		{"token name with NUL", http.MethodPost, "/v1/tokens", d.adminToken, `{"name":"a\u0000b","roles":["reader"]}`, "invalid-request"},
		{"hold reason with NUL", http.MethodPut, "/v1/subjects/x@example.com/hold", d.adminToken, `{"reason":"a\u0000b"}`, "invalid-request"},
		{"erase reason with NUL", http.MethodPost, "/v1/subjects/y@example.com/erase", d.adminToken, `{"reason":"a\u0000b"}`, "invalid-request"},
		{"policy path with NUL", http.MethodPut, "/v1/policies/t", d.adminToken, `{"paths":["/a\u0000b"]}`, "invalid-request"},
		{"personal data subject with NUL", http.MethodPost, "/v1/streams/s-1/events", writer,
			`{"events":[{"id":"` + id() + `","type":"t","data":{"n":1},"personalData":[{"subject":"a\u0000b","paths":["/n"]}]}]}`, "invalid-request"},
		{"event data with NUL", http.MethodPost, "/v1/streams/s-1/events", writer, appendBody(`{"n":"a\u0000b"}`), "invalid-event"},
		// Policy event types are checked like event types; an event type
		// no event can have has no policy.
		{"policy event type with NUL", http.MethodPut, "/v1/policies/a%00b", d.adminToken, `{"paths":["/x"]}`, "invalid-personal-data"},
		{"policy event type not UTF-8", http.MethodPut, "/v1/policies/a%FFb", d.adminToken, `{"paths":["/x"]}`, "invalid-personal-data"},
		{"policy lookup with NUL", http.MethodGet, "/v1/policies/a%00b", d.adminToken, "", "policy-not-found"},
		{"policy deletion not UTF-8", http.MethodDelete, "/v1/policies/a%FFb", d.adminToken, "", "policy-not-found"},
		// Query values no stored text can hold.
		{"log filter with NUL", http.MethodGet, "/v1/events?type=a%00b", reader, "", "invalid-query"},
		{"log filter not UTF-8", http.MethodGet, "/v1/events?category=a%FFb", reader, "", "invalid-query"},
		// Valid JSON that jsonb refuses (22003: numeric overflow).
		{"number jsonb cannot hold", http.MethodPost, "/v1/streams/s-1/events", writer, appendBody(`{"n":1e1000000}`), "invalid-event"},
		{"metadata number jsonb cannot hold", http.MethodPost, "/v1/streams/s-1/events", writer,
			`{"events":[{"id":"` + id() + `","type":"t","data":{},"metadata":{"n":-1e1000000}}]}`, "invalid-event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var p wire.Problem
			_ = json.Unmarshal(body, &p)
			if resp.StatusCode < 400 || resp.StatusCode >= 500 || p.Type != api.ProblemTypeBase+tc.want {
				t.Errorf("got %d %s; want 4xx %s", resp.StatusCode, body, tc.want)
			}
			for _, l := range strings.Split(d.logs.String(), "\n") {
				if strings.Contains(l, p.RequestID) && strings.Contains(l, "failed") {
					t.Logf("server log: %s", l)
				}
			}
		})
	}
}
