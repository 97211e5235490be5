package vault

import (
	"testing"

	"github.com/lethe-store/lethe/keystore"
)

// A derived key is an HMAC under the reference secret of a message no
// subject id can be: SubjectRef refuses it, so no subject reference the
// API shows equals a derived key (nor, then, lets anyone compute a MAC
// under it).
func TestDerivedKeyLabelIsNoSubject(t *testing.T) {
	for _, purpose := range []string{"", "lookup index v1"} {
		label := derivedKeyLabel(purpose)
		if err := keystore.ValidateSubject(string(label)); err == nil {
			t.Errorf("the label of %q is a valid subject id", purpose)
		}
	}
	if string(derivedKeyLabel("a")) == string(derivedKeyLabel("b")) {
		t.Error("two purposes share a label")
	}
}
