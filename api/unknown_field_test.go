package api_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
)

// An unknown field's name is the client's input: a body that puts
// personal data in the wrong place (a subject id or e-mail address as a
// key, e.g. a personalData map instead of a list) must not get it echoed
// in the problem, which clients and gateways log.
func TestUnknownFieldNotEchoed(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	body := `{"events":[{"id":"4b0d6d0e-2b7c-4f43-9c1e-6f0d3b0e9a11","type":"t","data":{"a":1},"casey.davis@example.com":["/a"]}]}`
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/streams/s-1/events", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tk.secrets[wire.RoleWriter])
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 {
		t.Fatalf("got %d %s, want 400", resp.StatusCode, b)
	}
	if strings.Contains(string(b), casey) {
		t.Errorf("the problem echoes the client's input: %s", b)
	}
}
