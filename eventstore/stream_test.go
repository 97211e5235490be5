package eventstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/lethe-store/lethe/eventstore"
)

func TestValidateStreamIDAccepts(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"a",
		"Z",
		"7",
		"lead-12",
		"lead_12",
		"order.v2:line@3",
		"123-abc",
		"A-b_c.d:e@f",
		"a-",
		"$erasure",
		"$erasure-log",
		"$9",
		"$All",   // only "$all" is reserved
		"$all-1", // a system stream, not the global log
		strings.Repeat("x", eventstore.MaxStreamIDLength),
		"$" + strings.Repeat("x", eventstore.MaxStreamIDLength-1),
	} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			if err := eventstore.ValidateStreamID(id); err != nil {
				t.Errorf("ValidateStreamID(%q): got %v, want nil", id, err)
			}
		})
	}
}

func TestValidateStreamIDRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		id     string
		reason string // a substring of the reason
	}{
		{"empty", "", "empty"},
		{"too long", strings.Repeat("x", eventstore.MaxStreamIDLength+1), "longer than 200 bytes"},
		{"system too long", "$" + strings.Repeat("x", eventstore.MaxStreamIDLength), "longer than 200 bytes"},
		{"global log", "$all", "global log"},
		{"only the prefix", "$", "nothing after $"},
		{"double prefix", "$$x", "must start with a letter or a digit"},
		{"starts with dash", "-lead", "must start with a letter or a digit"},
		{"starts with dot", ".lead", "must start with a letter or a digit"},
		{"starts with at", "@lead", "must start with a letter or a digit"},
		{"system starts with dash", "$-x", "must start with a letter or a digit"},
		{"space", "lead 12", "at byte 4"},
		{"slash", "lead/12", "'/'"},
		{"dollar inside", "lead$12", "'$'"},
		{"percent", "lead%20", "'%'"},
		{"newline", "lead\n12", `'\n'`},
		{"nul", "lead\x0012", "at byte 4"},
		{"non-ASCII", "léad", "at byte 1"},
		{"e-mail with plus", "jane+doe@example.com", "'+'"},
		{"quote", `lead"12`, "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := eventstore.ValidateStreamID(tt.id)
			if err == nil {
				t.Fatalf("ValidateStreamID(%q): got nil, want an error", tt.id)
			}
			if !errors.Is(err, eventstore.ErrInvalidStreamID) {
				t.Errorf("errors.Is(%v, ErrInvalidStreamID): got false, want true", err)
			}
			var ie *eventstore.InvalidStreamIDError
			if !errors.As(err, &ie) {
				t.Fatalf("errors.As(%v, *InvalidStreamIDError): got false, want true", err)
			}
			if got, want := ie.Reason, tt.reason; !strings.Contains(got, want) {
				t.Errorf("reason: got %q, want it to contain %q", got, want)
			}
			if got, want := err.Error(), "invalid stream id: "+ie.Reason; got != want {
				t.Errorf("Error(): got %q, want %q", got, want)
			}
		})
	}
}

// A refused id may hold personal data: the error never echoes it.
func TestValidateStreamIDErrorDoesNotEchoID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{
		"jane.doe+lethe@example.com",
		"Jane Doe",
		"lead/jane.doe@example.com",
		"-jane.doe@example.com",
		"$ jane",
		strings.Repeat("jane.doe@example.com", 11),
		"jane.doe@example.com\n",
	} {
		t.Run(id, func(t *testing.T) {
			t.Parallel()
			err := eventstore.ValidateStreamID(id)
			if err == nil {
				t.Fatalf("ValidateStreamID(%q): got nil, want an error", id)
			}
			for _, secret := range []string{"jane", "Jane", "example"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q echoes %q from the id", err, secret)
				}
			}
		})
	}
}

func TestInvalidStreamIDErrorWrapped(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("append: %w", eventstore.ValidateStreamID(""))
	if !errors.Is(err, eventstore.ErrInvalidStreamID) {
		t.Errorf("errors.Is(%v, ErrInvalidStreamID): got false, want true", err)
	}
	var ie *eventstore.InvalidStreamIDError
	if !errors.As(err, &ie) {
		t.Fatalf("errors.As(%v, *InvalidStreamIDError): got false, want true", err)
	}
	if got, want := ie.Reason, "empty"; got != want {
		t.Errorf("reason: got %q, want %q", got, want)
	}
	if errors.Is(err, eventstore.ErrInvalidEvent) {
		t.Errorf("errors.Is(%v, ErrInvalidEvent): got true, want false", err)
	}
}

func TestCategory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id, want string
	}{
		{"lead-12", "lead"},
		{"lead-12-3", "lead"},
		{"lead", "lead"},
		{"lead_12", "lead_12"},
		{"a-", "a"},
		{"-x", ""},
		{"", ""},
		{"$erasure-log", "$erasure"},
	}
	for _, tt := range tests {
		if got := eventstore.Category(tt.id); got != tt.want {
			t.Errorf("Category(%q): got %q, want %q", tt.id, got, tt.want)
		}
	}
}

func TestIsSystemStream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want bool
	}{
		{"$erasure", true},
		{"$all", true},
		{"$", true},
		{"lead-12", false},
		{"lead$12", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := eventstore.IsSystemStream(tt.id); got != tt.want {
			t.Errorf("IsSystemStream(%q): got %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		e      eventstore.ExpectedVersion
		valid  bool
		string string
	}{
		{"any", eventstore.Any, true, "any"},
		{"no stream", eventstore.NoStream, true, "no stream (-1)"},
		{"stream exists", eventstore.StreamExists, true, "stream exists"},
		{"exact 0", eventstore.Exact(0), true, "0"},
		{"exact 41", eventstore.Exact(41), true, "41"},
		{"exact max", eventstore.Exact(1<<63 - 1), true, "9223372036854775807"},
		{"below the sentinels", eventstore.ExpectedVersion(-4), false, "-4"},
		{"min", eventstore.ExpectedVersion(-1 << 63), false, "-9223372036854775808"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, want := tt.e.Valid(), tt.valid; got != want {
				t.Errorf("Valid(): got %v, want %v", got, want)
			}
			if got, want := tt.e.String(), tt.string; got != want {
				t.Errorf("String(): got %q, want %q", got, want)
			}
		})
	}
}

func TestExact(t *testing.T) {
	t.Parallel()
	if got, want := eventstore.Exact(-1), eventstore.NoStream; got != want {
		t.Errorf("Exact(-1): got %v, want %v", got, want)
	}
	for _, v := range []int64{0, 1, 7, 1 << 40} {
		if got, want := int64(eventstore.Exact(v)), v; got != want {
			t.Errorf("Exact(%d): got %d, want %d", v, got, want)
		}
	}
	// The sentinels are distinct from each other and from every exact version.
	seen := map[eventstore.ExpectedVersion]string{}
	for name, e := range map[string]eventstore.ExpectedVersion{
		"Any": eventstore.Any, "NoStream": eventstore.NoStream, "StreamExists": eventstore.StreamExists, "Exact(0)": eventstore.Exact(0),
	} {
		if other, ok := seen[e]; ok {
			t.Errorf("%s and %s are both %d", name, other, int64(e))
		}
		seen[e] = name
	}
}

// A computed version below -1 must not turn into Any or StreamExists.
func TestExactBelowMinusOneIsInvalid(t *testing.T) {
	for _, v := range []int64{-2, -3, -100} {
		if e := eventstore.Exact(v); e.Valid() || e == eventstore.Any || e == eventstore.StreamExists {
			t.Errorf("Exact(%d) = %v (valid %v), want an invalid expected version", v, e, e.Valid())
		}
	}
}
