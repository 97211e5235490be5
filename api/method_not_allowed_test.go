package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
)

// A 405 must list the methods the route answers (RFC 9110 §15.5.6; the
// docs promise it). chi routes on the raw path when it has escapes, so the
// Allow list is matched on it too: decoded, a subject or stream id with
// %2F changes the path's shape and the list would come out empty.
func TestMethodNotAllowedWithEscapedPath(t *testing.T) {
	admin := "admin-" + strings.Repeat("x", 40)
	hs := MustOpenServer(t, api.Options{AdminToken: admin})
	for _, path := range []string{"/v1/subjects/a%2Fb/erase", "/v1/policies/x%2Fy"} {
		req, _ := http.NewRequest(http.MethodPatch, hs.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("PATCH %s: %d, want 405", path, resp.StatusCode)
		}
		if allow := resp.Header.Get("Allow"); strings.TrimSpace(allow) == "" {
			t.Errorf("PATCH %s: 405 with an empty Allow header", path)
		}
	}
}
