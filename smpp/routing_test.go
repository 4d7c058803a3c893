package smpp

import (
	"errors"
	"testing"

	"github.com/mhero-health/mhero"
)

func TestRoute(t *testing.T) {
	r, err := newRouter([]Config{
		{Name: "lonestar", Prefixes: []string{"23188", "23155"}},
		{Name: "orange", Prefixes: []string{"2317", "231886"}}, // longer prefix wins
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		msisdn mhero.MSISDN
		want   string
		err    error
	}{
		{"231881234567", "lonestar", nil},
		{"+231551234567", "lonestar", nil},
		{"231886123456", "orange", nil},
		{"231770000000", "orange", nil},
		{"254712345678", "", ErrUnroutable},
		{"", "", ErrUnroutable},
	}
	for _, tt := range tests {
		got, err := r.lookup(tt.msisdn)
		if got != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("lookup(%q) = %q, %v; want %q, %v", tt.msisdn, got, err, tt.want, tt.err)
		}
	}
	if _, err := r.lookup("254712345678"); mhero.ErrorCode(err) != mhero.EVALIDATION {
		t.Errorf("ErrorCode(unroutable) = %q, want %q", mhero.ErrorCode(err), mhero.EVALIDATION)
	}
}

func TestRouteConflict(t *testing.T) {
	_, err := newRouter([]Config{{Name: "a", Prefixes: []string{"231"}}, {Name: "b", Prefixes: []string{"231"}}})
	if err == nil {
		t.Fatal("newRouter with one prefix on two MNOs = nil error")
	}
}
