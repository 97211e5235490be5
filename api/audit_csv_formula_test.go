package api_test

import (
	"bytes"
	"encoding/csv"
	"testing"

	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
)

// The audit export's CSV is opened in spreadsheets: no cell starts with a
// character a spreadsheet reads as a formula (= + - @, tab, CR), whatever
// a request id or an actor said; such a cell is prefixed with a quote.
func TestAuditCSVCellsAreNoFormulas(t *testing.T) {
	d := newDeployment(t)
	hs := d.server(withAudit(d))
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	store := d.open().Store() // the lethe command, another process
	for i, id := range []string{`=HYPERLINK("http://evil.example/","x")`, "+1+1", "-2-3", "@SUM(A1)"} {
		if _, err := store.Forget(ctx, []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"}[i],
			forgettable.ErasureRequest{Actor: "cli:" + id, RequestID: id}); err != nil {
			t.Fatal(err)
		}
	}
	raw := export(t, tk.auditor, client.AuditExportOptions{Format: "csv"})
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	quoted := 0
	for _, row := range rows {
		for _, cell := range row {
			if cell == "" {
				continue
			}
			switch cell[0] {
			case '=', '+', '-', '@', '\t', '\r':
				t.Errorf("CSV cell %q starts like a formula", cell)
			case '\'':
				quoted++
			}
		}
	}
	if quoted == 0 {
		t.Error("no neutralised cell: the request ids and actors were not exported?")
	}
}
