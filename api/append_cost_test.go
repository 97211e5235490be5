package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// postAppend sends an append body as the writer and returns status, body
// and how long the server took.
func postAppend(t *testing.T, hs interface{ Client() *http.Client }, url, token, body string) (int, []byte, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, time.Since(start)
}

// One event whose personalData lists n paths (each naming a field of a
// data object of n fields), well within the limits. The checks on paths
// used to compare every path with every other (a writer could keep a core
// busy for a minute with one request); they are linear now.
func TestPersonalDataPathsCostIsLinear(t *testing.T) {
	d := newDeployment(t)
	// As many values as paths: the leaves limit raised to let them in.
	hs := d.server(withLimits(func(l *api.Limits) { l.MaxLeavesPerEvent = pathCounts[len(pathCounts)-1] }))
	tk := d.tokens(hs)
	body := func(n int) string {
		var data, paths strings.Builder
		data.WriteString("{")
		for i := range n {
			if i > 0 {
				data.WriteString(",")
				paths.WriteString(",")
			}
			fmt.Fprintf(&data, `"f%d":"v"`, i)
			fmt.Fprintf(&paths, `"/f%d"`, i)
		}
		data.WriteString("}")
		return `{"events":[{"id":"` + eventstore.NewEventID().String() + `","type":"t","data":` + data.String() +
			`,"personalData":[{"subject":"` + testenv.Name("s") + `@example.com","paths":[` + paths.String() + `]}]}]}`
	}
	// No timing here (tests don't time; BenchmarkPlanManyPaths in
	// forgettable measures it): an event with many declared paths is
	// accepted, every field sealed.
	for _, n := range pathCounts {
		b := body(n)
		status, resp, took := postAppend(t, hs, hs.URL+"/v1/streams/s-"+fmt.Sprint(n)+"/events", tk.secrets[wire.RoleWriter], b)
		t.Logf("n=%d: body %d KiB, %d in %v", n, len(b)>>10, status, took.Round(time.Millisecond))
		if status != 201 {
			t.Fatalf("n=%d: %d %s", n, status, resp)
		}
		var sealed int
		if err := d.pool.QueryRow(testenv.Context(t), `SELECT count(*) FROM events e, jsonb_each_text(e.data) f WHERE e.stream_id = $1 AND f.value LIKE 'lethe:v1:%'`,
			"s-"+fmt.Sprint(n)).Scan(&sealed); err != nil || sealed != n {
			t.Errorf("n=%d: %d fields sealed (%v)", n, sealed, err)
		}
	}
}

// MaxSubjectsPerEvent (64) is checked by the event store, after
// forgettable has created (in Vault) a key for every subject of the
// refused event: a writer can create any number of Vault keys with
// requests that are refused.
func TestRefusedAppendCreatesNoKeys(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	prefix := testenv.Name("many")
	var data strings.Builder
	var pds []wire.PersonalData
	data.WriteString("{")
	for i := range 65 {
		if i > 0 {
			data.WriteString(",")
		}
		fmt.Fprintf(&data, `"f%d":"v"`, i)
		pds = append(pds, wire.PersonalData{Subject: fmt.Sprintf("%s-%d@example.com", prefix, i), Paths: []string{fmt.Sprintf("/f%d", i)}})
	}
	data.WriteString("}")
	_, err := tk.writer.Append(ctx, "lead-65", wire.Any(), wire.NewEvent{ID: eventstore.NewEventID().String(), Type: "t",
		Data: json.RawMessage(data.String()), PersonalData: pds})
	if err == nil {
		t.Fatal("an event with 65 subjects was accepted; want it refused (MaxSubjectsPerEvent is 64)")
	}
	t.Logf("refused: %v", err)
	// Did the refused append leave keys behind? Erasing a subject says
	// whether it had a key.
	receipt, err := tk.admin.Erase(ctx, pds[0].Subject, wire.EraseRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if receipt.Completion != nil && receipt.Completion.KeyExisted {
		t.Errorf("after a refused append, subject 0 had a key in Vault (erasure receipt keyExisted: true): " +
			"the per-event subject limit must be checked before keys are created")
	}
}

// pathCounts are the field counts tried, growing: 4x the work for 2x the
// fields.
var pathCounts = []int{5000, 20000}
