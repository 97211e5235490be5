package api_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/lethe-store/lethe/api"
	"github.com/lethe-store/lethe/api/client"
	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/forgettable"
	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/projection"
)

// the snapshot loader and the generic fold answer the same state.
func TestStatePathsAgree(t *testing.T) {
	ups, err := projection.NewUpcasters(projection.Upcaster{Type: "no-such-type", From: 1,
		Up: func(data json.RawMessage, red []forgettable.Redaction) (json.RawMessage, []forgettable.Redaction, error) {
			return data, red, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	d := newDeployment(t)
	loader := d.server()
	generic := d.server(func(o *api.Options) { o.Upcasters = ups })
	tk := d.tokens(loader)
	ctx := testenv.Context(t)
	var times []time.Time
	for i, e := range seedLead() {
		res, err := tk.writer.Append(ctx, "lead-12", wire.Exact(int64(i)-1), e)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tk.reader.ReadStream(ctx, "lead-12", client.ReadOptions{From: client.Version(res.FirstVersion), Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, p.Events[0].RecordedAt)
		time.Sleep(5 * time.Millisecond)
	}
	var opts []client.StateOptions
	for v := range 7 {
		opts = append(opts, client.StateOptions{Version: ptr(int64(v))})
		at := times[v]
		opts = append(opts, client.StateOptions{At: &at})
		mid := times[v].Add(time.Millisecond)
		opts = append(opts, client.StateOptions{At: &mid})
	}
	opts = append(opts, client.StateOptions{}, client.StateOptions{At: ptr(times[0].Add(-time.Second))}, client.StateOptions{Version: ptr(int64(9))})
	compare := func(when string) {
		for _, role := range []string{wire.RolePIIReader, wire.RoleReader} {
			a := client.New(loader.URL, tk.secrets[role], loader.Client())
			b := client.New(generic.URL, tk.secrets[role], generic.Client())
			for _, o := range opts {
				sa, ea := a.State(ctx, "lead-12", o)
				sb, eb := b.State(ctx, "lead-12", o)
				if problemType(ea) != problemType(eb) || !reflect.DeepEqual(sa, sb) {
					t.Errorf("%s, %s, %+v: loader %s %+v %v; generic %s %+v %v", when, role, o, sa.State, sa, ea, sb.State, sb, eb)
				}
			}
		}
	}
	compare("before the erase")
	if _, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{}); err != nil {
		t.Fatal(err)
	}
	compare("after the erase")
}
