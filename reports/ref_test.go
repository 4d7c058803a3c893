package reports

import (
	"regexp"
	"testing"
)

var refShape = regexp.MustCompile(`^[SRV]-[0-9A-HJKMNP-TV-Z]{5,12}$`)

func TestRefRoundTrips(t *testing.T) {
	t.Parallel()
	seen := map[string]int64{}
	ids := []int64{1, 2, 3, 31, 32, 1000, 1 << 24, 1<<25 - 1, 1 << 25, 1<<30 - 1, 1 << 30, 1 << 40, 1<<60 - 1}
	for i := int64(1); i <= 50_000; i++ {
		ids = append(ids, i)
	}
	for _, id := range ids {
		ref := Ref(RefStock, id)
		if !refShape.MatchString(ref) {
			t.Fatalf("Ref(%d) = %q, not a reference", id, ref)
		}
		if other, dup := seen[ref]; dup && other != id {
			t.Fatalf("Ref(%d) = Ref(%d) = %q", id, other, ref)
		}
		seen[ref] = id
		got, err := ParseRef(RefStock, ref)
		if err != nil || got != id {
			t.Fatalf("ParseRef(%q) = %d, %v; want %d", ref, got, err, id)
		}
	}
	if n := len(Ref(RefStock, 1<<25-1)); n != 7 {
		t.Errorf("the first 32^5 ids have %d-character references, want 7 (S-XXXXX)", n)
	}
}

// Consecutive reports must not get references that differ in one character: a worker
// who mistypes one character must not land on the report sent just after.
func TestRefsOfNeighboursLookUnrelated(t *testing.T) {
	t.Parallel()
	for id := int64(1); id < 1000; id++ {
		a, b := Ref(RefStock, id), Ref(RefStock, id+1)
		same := 0
		for i := 2; i < len(a); i++ {
			if a[i] == b[i] {
				same++
			}
		}
		if same >= 4 {
			t.Errorf("Ref(%d) = %s and Ref(%d) = %s share %d of 5 characters", id, a, id+1, b, same)
		}
	}
}

func TestParseRefForgivesTyping(t *testing.T) {
	t.Parallel()
	id := int64(4242)
	ref := Ref(RefReferral, id)
	body := ref[2:]
	variants := []string{ref, "r-" + body, "R" + body, " r " + body[:2] + " " + body[2:] + " "}
	for _, v := range variants {
		if got, err := ParseRef(RefReferral, v); err != nil || got != id {
			t.Errorf("ParseRef(%q) = %d, %v; want %d", v, got, err, id)
		}
	}
	// Letters people mistake for digits.
	for id := int64(1); id < 5000; id++ {
		ref := Ref(RefStock, id)
		for from, to := range map[byte]string{'0': "oO", '1': "iIlL"} {
			for i := 2; i < len(ref); i++ {
				if ref[i] != from {
					continue
				}
				for _, c := range []byte(to) {
					typed := ref[:i] + string(c) + ref[i+1:]
					if got, err := ParseRef(RefStock, typed); err != nil || got != id {
						t.Fatalf("ParseRef(%q) = %d, %v; want %d (%s)", typed, got, err, id, ref)
					}
				}
			}
		}
	}
}

func TestParseRefRejects(t *testing.T) {
	t.Parallel()
	ref := Ref(RefStock, 77)
	for _, in := range []string{"", "S", "S-", "S-1234", ref[:len(ref)-1], "R" + ref[1:], "S-UUUUU", "S-12345678901234",
		"SS-12345"} {
		if id, err := ParseRef(RefStock, in); err == nil {
			t.Errorf("ParseRef(%q) = %d, want an error", in, id)
		}
	}
}

// FuzzParseRef: no input panics, and whatever parses names an id whose reference parses
// back to it.
func FuzzParseRef(f *testing.F) {
	f.Add("S-7K3Q9")    // the example
	f.Add("s 7k3q9")    // typed on a phone
	f.Add("S-0000000")  // a long, low one: not given out
	f.Add("S-ZZZZZZZZ") // the top of the 8-character space
	f.Add("S-")         // nothing after the dash
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseRef(RefStock, s)
		if err != nil {
			return
		}
		if id <= 0 {
			t.Fatalf("ParseRef(%q) = %d", s, id)
		}
		back, err := ParseRef(RefStock, Ref(RefStock, id))
		if err != nil || back != id {
			t.Fatalf("ParseRef(%q) = %d, whose reference %s parses as %d, %v", s, id, Ref(RefStock, id), back, err)
		}
	})
}
