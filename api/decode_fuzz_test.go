package api

import (
	"testing"
)

// The append request decoder takes untrusted bytes: whatever they are, it
// answers either events the store may be asked to append, or a 4xx problem
// of a known type — never a panic.
func FuzzDecodeAppend(f *testing.F) {
	id := "0190a6f2-6f3c-7b1e-8a4f-3c2d1e0f9a8b"
	for _, seed := range []string{
		`{"expectedVersion":-1,"events":[{"id":"` + id + `","type":"lead-initialized","data":{"first-name":"Casey","phone-number":"555-2951"},"personalData":[{"subject":"casey.davis@example.com","paths":["/first-name","/phone-number"]}]}]}`,
		`{"expectedVersion":"any","events":[{"id":"` + id + `","type":"t","data":{},"metadata":{"c":1}}]}`,
		`{"expectedVersion":"exists","events":[]}`,
		`{"expectedVersion":-7,"events":[{"id":"x"}]}`,
		`{"events":[{"id":"` + id + `","type":"t","data":null,"metadata":null}]}`,
		`{"events":[{"id":"` + id + `","type":"t","data":{"a":1},"personalData":[{"subject":"","paths":[]}]}]}`,
		`{"events":[{"id":"` + id + `","type":"t","data":{"a":1,"a":"\u0000"},"personalData":[],"personalData":[{"subject":"s","paths":["/a"]}]}]}`,
		`{"Events":[{"ID":"` + id + `","type":"t\u0000","data":{"a":"\\u0000"}}]}`,
		`{"events": [`, `[]`, `null`, `{"colour":1}`, `{"events":[{"id":"` + id + `","type":"t","data":{}}]} x`,
	} {
		f.Add([]byte(seed))
	}
	limits := Limits{MaxEventsPerAppend: 3, MaxEventBytes: 512}.withDefaults()
	f.Fuzz(func(t *testing.T, body []byte) {
		expected, events, bad := decodeAppend(body, limits)
		if bad != nil {
			if bad.status < 400 || bad.status > 499 || problemTitles[bad.name] == "" || bad.detail == "" {
				t.Fatalf("bad request %+v", bad)
			}
			if events != nil {
				t.Fatalf("events returned with a problem")
			}
			return
		}
		if len(events) == 0 || len(events) > limits.MaxEventsPerAppend || !expected.Valid() {
			t.Fatalf("accepted %d events, expected %d", len(events), expected)
		}
		for i, e := range events {
			if err := e.EventData.Validate(); err != nil {
				t.Fatalf("accepted event %d that the store refuses: %v", i, err)
			}
			if len(e.Data)+len(e.Metadata) > limits.MaxEventBytes {
				t.Fatalf("accepted event %d over the size limit", i)
			}
			for _, pd := range e.PersonalData {
				if pd.Subject == "" || len(pd.Paths) == 0 {
					t.Fatalf("accepted an empty declaration")
				}
			}
		}
	})
}
