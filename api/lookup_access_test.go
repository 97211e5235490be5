package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
)

// piiReaderTokens authenticates any token as a pii-reader.
type piiReaderTokens struct{ api.TokenStore }

func (piiReaderTokens) Authenticate(context.Context, [32]byte) (api.Principal, error) {
	return api.Principal{TokenID: "pii-reader", Roles: []string{wire.RolePIIReader}}, nil
}

// lookupReadModels finds every value in one stream.
type lookupReadModels struct{ api.ReadModels }

func (lookupReadModels) Lookup(context.Context, string, string, string) ([]string, []string, error) {
	return []string{"lead-12"}, []string{strings.Repeat("ab", 32)}, nil
}

// A lookup tells which streams held a value: like a read of personal data,
// it is not served unless it can be recorded in the access log.
func TestLookupNeedsAnAccessLog(t *testing.T) {
	t.Parallel()
	hs := MustOpenServer(t, api.Options{Tokens: piiReaderTokens{}, ReadModels: lookupReadModels{}})
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v1/lookup?category=lead&field=/phone-number&value=555-2951", nil)
	req.Header.Set("Authorization", "Bearer anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusInternalServerError || strings.Contains(string(body), "lead-12") {
		t.Errorf("lookup without an access log: got %d %s, want 500 without the streams", resp.StatusCode, body)
	}
}
