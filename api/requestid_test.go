package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// validRequestID is what a request id may be: 1 to 128 characters of
// A-Z a-z 0-9 . _ : / -.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,128}$`)

// getWithRequestID sends GET url with an X-Request-Id (none if id is "")
// and returns the answer's X-Request-Id and its problem's requestId.
func getWithRequestID(t *testing.T, url, id string) (header, inProblem string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatalf("decode problem: %v", err)
	}
	return resp.Header.Get("X-Request-Id"), p.RequestID
}

// A client's X-Request-Id is the request id if it is 1 to 128 characters
// of A-Z a-z 0-9 . _ : / -; any other is replaced by a new id.
func TestRequestIDFromClient(t *testing.T) {
	t.Parallel()
	srv := MustOpenServer(t, api.Options{})
	for _, tc := range []struct {
		name, id string
		kept     bool
	}{
		{"ticket number", "JIRA-123", true},
		{"every allowed character", "Az09._:/-", true},
		{"128 characters", strings.Repeat("a", 128), true},
		{"none", "", false},
		{"129 characters", strings.Repeat("a", 129), false},
		{"space", "JIRA 123", false},
		{"quote", `a"b`, false},
		{"equals sign", "a=b", false},
		{"non-ASCII", "tické", false},
		{"log injection", "x msg=forged", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			header, inProblem := getWithRequestID(t, srv.URL+"/no-such-route", tc.id)
			if got, want := inProblem, header; got != want {
				t.Errorf("problem requestId: got %q, want the header's %q", got, want)
			}
			if tc.kept {
				if got, want := header, tc.id; got != want {
					t.Errorf("X-Request-Id: got %q, want the client's %q", got, want)
				}
				return
			}
			if header == tc.id || !validRequestID.MatchString(header) {
				t.Errorf("X-Request-Id: got %q, want a new valid id, not the client's %q", header, tc.id)
			}
		})
	}
	// Generated ids differ.
	a, _ := getWithRequestID(t, srv.URL+"/no-such-route", "")
	b, _ := getWithRequestID(t, srv.URL+"/no-such-route", "")
	if a == b {
		t.Errorf("two generated request ids: got %q twice, want them to differ", a)
	}
}

// The request log line names the token of an authenticated request.
func TestRequestLogHasTokenID(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	e := wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "tick", Data: json.RawMessage(`{"n":1}`)}
	if _, err := tk.writer.Append(ctx, "clock-1", wire.Any(), e); err != nil {
		t.Fatal(err)
	}
	want := "token_id=" + tk.ids[wire.RoleWriter]
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if strings.Contains(line, "msg=request ") && strings.Contains(line, "method=POST") && strings.Contains(line, "/v1/streams/") {
			if !strings.Contains(line, want) {
				t.Errorf("request log line of the append: got %q, want it to hold %s", line, want)
			}
			return
		}
	}
	t.Errorf("no request log line of the append in:\n%s", d.logs.String())
}
