package api_test

import (
	"fmt"
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
)

// docs/api.md ("The access log") answers "who was shown this
// person's data?" with `WHERE subject_refs @> ARRAY[ref]`. A lookup by
// casey's phone number tells the caller which stream is hers, and
// read_lookup knows whose entries matched (its subject_refs column), but the
// access log row of the lookup has no subject reference: the documented
// query never finds it.
func TestLookupAccessIsFoundBySubject(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	var ref string
	if err := d.pool.QueryRow(ctx, `SELECT subject_refs[1] FROM events WHERE stream_id = 'lead-12' AND version = 0`).Scan(&ref); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lookup by casey's old phone number", func() error {
		s, err := tk.pii.Lookup(ctx, "lead", "/phone-number", "555-2951")
		if err != nil || fmt.Sprint(s) != "[lead-12]" {
			return fmt.Errorf("%v, %v", s, err)
		}
		return nil
	})
	var all, bySubject int
	if err := d.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE subject_refs @> ARRAY[$1]) FROM access_log WHERE route = '/v1/lookup'`, ref).Scan(&all, &bySubject); err != nil {
		t.Fatal(err)
	}
	if all == 0 || bySubject != all {
		t.Errorf("lookup rows in the access log: got %d, of which %d found by casey's reference; want all found by it", all, bySubject)
	}
}
