package api

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mhero-health/mhero"
)

func TestDecodeNamesTheProblem(t *testing.T) {
	type body struct {
		Name   string       `json:"name"`
		Count  int          `json:"count"`
		MSISDN mhero.MSISDN `json:"msisdn"`
	}
	tests := []struct {
		name, in, ctype string
		code, field     string
	}{
		{"ok", `{"name":"a","count":2}`, "application/json", "", ""},
		{"empty", ``, "", mhero.EINVALID, ""},
		{"syntax", `{"name":`, "", mhero.EINVALID, ""},
		{"wrong type", `{"count":"two"}`, "", mhero.EINVALID, "count"},
		{"unknown field", `{"colour":"blue"}`, "", mhero.EINVALID, "colour"},
		{"two values", `{} {}`, "", mhero.EINVALID, ""},
		{"not json", `name=a`, "application/x-www-form-urlencoded", mhero.EINVALID, ""},
		{"bad msisdn", `{"msisdn":"+12ab"}`, "", mhero.EINVALID, ""},
		{"too large", `{"name":"` + strings.Repeat("x", MaxJSONBody) + `"}`, "", mhero.ETOOLARGE, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tt.in))
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			var b body
			err := Decode(httptest.NewRecorder(), r, &b)
			if got := mhero.ErrorCode(err); got != tt.code {
				t.Fatalf("Decode(%.40q) code = %q (%v), want %q", tt.in, got, err, tt.code)
			}
			if tt.field != "" {
				d := mhero.ErrorDetails(err)
				if len(d) != 1 || d[0].Field != tt.field {
					t.Errorf("Decode(%q) details = %+v, want field %q", tt.in, d, tt.field)
				}
			}
		})
	}
}

func TestCursorRoundTripAndRejectsForgeries(t *testing.T) {
	for _, id := range []int64{0, 1, 987654321} {
		got, err := DecodeCursor(EncodeCursor(id))
		if err != nil || got != id {
			t.Errorf("DecodeCursor(EncodeCursor(%d)) = %d, %v", id, got, err)
		}
	}
	for _, c := range []string{"", "garbage", "aWQ6LTE", "aWQ6eA"} { // "", -, "id:-1", "id:x"
		if _, err := DecodeCursor(c); mhero.ErrorCode(err) != mhero.EINVALID {
			t.Errorf("DecodeCursor(%q) err = %v, want invalid", c, err)
		}
	}
}

func TestErrorNeverLeaksInternals(t *testing.T) {
	w := httptest.NewRecorder()
	Error(w, httptest.NewRequest("GET", "/", nil), nil, errString("pq: password authentication failed for user mhero"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "password") {
		t.Errorf("internal error answered %d %s", w.Code, w.Body)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
