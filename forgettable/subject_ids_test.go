package forgettable_test

import (
	"testing"

	"github.com/lethe-store/lethe/internal/testenv"
	"github.com/lethe-store/lethe/keystore"
)

// Subject ids are compared byte for byte: ids that differ in case or
// spaces are different subjects, with different references (docs/api.md
// says to normalise them before sending).
func TestSubjectIdsAreComparedByteForByte(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testenv.Context(t)
	a := e.instance()
	seen := map[keystore.Ref]string{}
	for _, id := range []string{"casey.davis@example.com", "Casey.Davis@example.com", "casey.davis@example.com ", " casey.davis@example.com"} {
		ref, err := a.SubjectRef(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[ref]; ok {
			t.Errorf("%q and %q have the same reference", id, other)
		}
		seen[ref] = id
	}
}
