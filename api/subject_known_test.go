package api_test

import (
	"testing"

	"github.com/lethe-store/lethe/api/wire"
	"github.com/lethe-store/lethe/internal/testenv"
)

// The receipt of an erasure says whether there was anything to erase: a
// subject Lethe never saw is recorded (and fenced) like any other, but
// its receipt says subjectKnown: false.
func TestErasureReceiptSaysWhetherTheSubjectWasKnown(t *testing.T) {
	d := newDeployment(t)
	hs := d.server()
	tk := d.tokens(hs)
	ctx := testenv.Context(t)
	appendSeedLead(t, tk.writer)
	known, err := tk.admin.Erase(ctx, casey, wire.EraseRequest{})
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := tk.admin.Erase(ctx, "nobody@example.com", wire.EraseRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := known.Completion; c == nil || !c.SubjectKnown {
		t.Errorf("erasure of casey: completion %+v; want subjectKnown", c)
	}
	if c := unknown.Completion; c == nil || c.SubjectKnown || c.KeyExisted || c.EventsAffected != 0 {
		t.Errorf("erasure of a subject never seen: completion %+v; want subjectKnown false", c)
	}
}
