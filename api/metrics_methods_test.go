package api_test

import (
	"bufio"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/internal/testenv"
)

// Any token is a valid HTTP method: labelled with the client's method
// verbatim, the request metric would let unauthenticated clients create
// as many series of lethe_http_request_duration_seconds (14 samples each)
// as they like. Methods outside HTTP's standard ones are counted, and
// logged, as OTHER.
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	logs := &testenv.SyncBuffer{}
	hs := MustOpenServer(t, api.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	for i := range 200 {
		req, _ := http.NewRequest(fmt.Sprintf("X-ANYTHING-%d", i), hs.URL+"/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	methods := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "lethe_http_request_duration_seconds_count{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `method="`)
		m, _, _ := strings.Cut(rest, `"`)
		methods[m] = true
	}
	if len(methods) > 10 {
		t.Errorf("lethe_http_request_duration_seconds has %d method label values after 200 requests with made-up methods; "+
			"want a fixed set (GET, POST, ... and one bucket such as OTHER)", len(methods))
	}
	if strings.Contains(logs.String(), "X-ANYTHING-199") {
		t.Errorf("the request log line carries the client's made-up method verbatim")
	}
}
