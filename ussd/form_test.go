package ussd

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

var formFields = []string{"sessionId", "serviceCode", "networkCode", "text", "phoneNumber"}

// checkFormLikeParseForm reads req with readForm and with ParseForm and reports where
// they differ: readForm must accept, refuse and read exactly what ParseForm does.
func checkFormLikeParseForm(t *testing.T, newReq func() *http.Request) {
	t.Helper()
	got, err := readForm(newReq(), formFields...)
	want := newReq()
	wantErr := want.ParseForm()
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("readForm error %v, ParseForm error %v", err, wantErr)
	}
	if err != nil {
		return
	}
	for i, name := range formFields {
		if got[i] != want.PostForm.Get(name) {
			t.Errorf("%s = %q, ParseForm read %q", name, got[i], want.PostForm.Get(name))
		}
	}
}

func TestReadFormReadsWhatParseFormReads(t *testing.T) {
	form := "sessionId=ATUid_1&serviceCode=%2A384%2A12%23&phoneNumber=%2B231886123456&networkCode=63907&text=1%2A2"
	tests := []struct {
		name, contentType, target, body string
	}{
		{"form", formContentType, "/", form},
		{"charset parameter", formContentType + "; charset=utf-8", "/", form},
		{"upper-case type", "Application/X-WWW-Form-Urlencoded", "/", form},
		{"no content type", "", "/", form},
		{"JSON", "application/json", "/", `{"sessionId": "x"}`},
		{"bad media type", "application/x-www-form-urlencoded; =", "/", form},
		{"repeated field: the first counts", formContentType, "/", "text=1&text=2&sessionId=a"},
		{"plus is a space", formContentType, "/", "text=a+b&sessionId=a%20b"},
		{"lower-case escapes", formContentType, "/", "text=%2a%2B"},
		{"escaped key", formContentType, "/", "session%49d=x"},
		{"key without value", formContentType, "/", "sessionId&text="},
		{"empty pairs", formContentType, "/", "&&sessionId=a&"},
		{"semicolon", formContentType, "/", "sessionId=a;text=1"},
		{"bad escape", formContentType, "/", "sessionId=a&text=%2"},
		{"bad escape in an unused field", formContentType, "/", "sessionId=a&other=%zz"},
		{"bad query string", formContentType, "/?secret=a;b", form},
		{"good query string", formContentType, "/?secret=a", form},
		{"field only in the query", formContentType, "/?text=9", "sessionId=a"},
		{"empty body", formContentType, "/", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkFormLikeParseForm(t, func() *http.Request {
				r := httptest.NewRequest(http.MethodPost, tt.target, strings.NewReader(tt.body))
				if tt.contentType != "" {
					r.Header.Set("Content-Type", tt.contentType)
				}
				return r
			})
		})
	}
}

func TestReadFormRefusesABodyOverTheLimit(t *testing.T) {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader("text="+strings.Repeat("1", maxBody)))
	r.Header.Set("Content-Type", formContentType)
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if _, err := readForm(r, formFields...); err == nil {
		t.Fatal("readForm read a body over maxBody")
	}
}

func FuzzReadForm(f *testing.F) {
	f.Add("sessionId=ATUid_1&serviceCode=%2A384%2A12%23&phoneNumber=%2B231886123456&networkCode=63907&text=1%2A2", "")
	f.Add("text=a+b;c&&text=%zz", "secret=x")
	f.Add("session%49d=%2", "a;b")
	f.Fuzz(func(t *testing.T, body, query string) {
		checkFormLikeParseForm(t, func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
			r.URL.RawQuery = query
			r.Header.Set("Content-Type", formContentType)
			return r
		})
	})
}

// The same check over url.ParseQuery directly, for pairs FuzzReadForm may not reach.
func TestParseFormMatchesParseQuery(t *testing.T) {
	for _, body := range []string{"a=1&b=2", "a=%41&a=2", "=x", "a=", "%=1", "a=1%", "a=%4", "x=%G1"} {
		q, qerr := url.ParseQuery(body)
		out := make([]string, 2)
		err := parseForm([]byte(body), []string{"a", "x"}, out)
		if (err != nil) != (qerr != nil) || out[0] != q.Get("a") || out[1] != q.Get("x") {
			t.Errorf("parseForm(%q) = %q, %v; ParseQuery: a=%q x=%q, %v", body, out, err, q.Get("a"), q.Get("x"), qerr)
		}
	}
}
