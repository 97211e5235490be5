package api_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/eventstore"
	"github.com/lethe-store/lethe/internal/testenv"
)

// docs/api.md: "Bodies are strict: an unknown field ... is
// invalid-request". encoding/json alone matches keys case-insensitively
// and lets a repeated key override the earlier one: a second
// "personalData" key would silently replace the declaration, and the name
// below would be stored in the clear. Anything that inspects the JSON with
// a case-sensitive or first-wins parser (a gateway, an audit of request
// bodies) would see a different request from the one Lethe executes.
func TestDuplicateOrCaseVariantKeysRefused(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	for i, tc := range []struct{ name, event string }{
		{"repeated personalData", `"personalData":[{"subject":"zoe@example.com","paths":["/name"]}],"personalData":[]`},
		{"case variant", `"PersonalData":[{"subject":"zoe@example.com","paths":["/name"]}],"PERSONALDATA":[]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := "lead-dup" + string(rune('a'+i))
			body := `{"events":[{"id":"` + eventstore.NewEventID().String() + `","type":"t","data":{"name":"Zoe Quartz"},` + tc.event + `}]}`
			req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/streams/"+stream+"/events", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tk.secrets[wire.RoleWriter])
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 {
				var clear bool
				_ = d.pool.QueryRow(testenv.Context(t), `SELECT data->>'name' = 'Zoe Quartz' FROM events WHERE stream_id = $1`, stream).Scan(&clear)
				t.Errorf("got %d %s (stored in the clear: %v); want 400 invalid-request", resp.StatusCode, b, clear)
			}
		})
	}
}

// wire.Decode refuses what encoding/json lets through: a key given twice
// in an object, a key that is not exactly a field name, a NUL in a string.
// The user's own JSON (data, metadata) is not its business.
func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	appendReq := func(b string) error { _, err := wire.Decode[wire.AppendRequest]([]byte(b)); return err }
	var typeErr *json.UnmarshalTypeError
	for _, tc := range []struct {
		name string
		err  error
		want func(error) bool
	}{
		{"data and metadata are free", appendReq(`{"events":[{"id":"x","type":"t","data":{"a":1,"a":2,"A":{"\u0000":1}},"metadata":{"k":1,"k":2}}]}`),
			func(err error) bool { return err == nil }},
		{"repeated key", appendReq(`{"events":[],"events":[]}`), is(wire.ErrDuplicateField)},
		{"repeated nested key", appendReq(`{"events":[{"personalData":[{"subject":"a","subject":"b","paths":["/a"]}]}]}`), is(wire.ErrDuplicateField)},
		{"case variant", appendReq(`{"Events":[]}`), is(wire.ErrUnknownField)},
		{"nested case variant", appendReq(`{"events":[{"ID":"x"}]}`), is(wire.ErrUnknownField)},
		{"case variant of roles", func() error {
			_, err := wire.Decode[wire.TokenRequest]([]byte(`{"name":"n","roles":["reader"],"Roles":["admin"]}`))
			return err
		}(), is(wire.ErrUnknownField)},
		{"NUL in a string", appendReq(`{"events":[{"type":"a\u0000"}]}`), is(wire.ErrNULCharacter)},
		{"NUL in a list", func() error {
			_, err := wire.Decode[wire.PolicyRequest]([]byte(`{"paths":["/a","/\u0000"]}`))
			return err
		}(), is(wire.ErrNULCharacter)},
		{"trailing data", appendReq(`{} {}`), is(wire.ErrTrailingData)},
		{"wrong shape", appendReq(`{"events":{"a":1,"a":2}}`), func(err error) bool { return errors.As(err, &typeErr) }},
		{"expectedVersion checks itself", appendReq(`{"expectedVersion":{"x":1,"x":2}}`), is(wire.ErrBadExpectedVersion)},
	} {
		if !tc.want(tc.err) {
			t.Errorf("%s: got %v", tc.name, tc.err)
		}
	}
	err := appendReq(`{"casey.davis@example.com":1}`)
	var de *wire.DecodeError
	if !errors.As(err, &de) || de.Offset != 26 || strings.Contains(err.Error(), "casey") {
		t.Errorf("unknown key: got %v, want a DecodeError at byte 26 (after the key) that does not quote the key", err)
	}
}

func is(target error) func(error) bool { return func(err error) bool { return errors.Is(err, target) } }
