package ussd

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// readRecorded reads a request as the gateway sent it (testdata/<gateway>/<name>.http).
func readRecorded(t *testing.T, gateway, name string) *http.Request {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", gateway, name+".http"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	r, err := http.ReadRequest(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s/%s: %v", gateway, name, err)
	}
	return r
}

func TestGatewaysDecodeRecordedRequests(t *testing.T) {
	tests := []struct {
		gateway, name string
		want          Request
		wantErr       bool
	}{
		{"africastalking", "dial", Request{SessionID: "ATUid_6c1d2e3f4a5b", MSISDN: "231886123456", ServiceCode: "*384*12#",
			Network: "63907", Input: CumulativeText("")}, false},
		{"africastalking", "continue", Request{SessionID: "ATUid_6c1d2e3f4a5b", MSISDN: "231886123456", ServiceCode: "*384*12#",
			Network: "63907", Input: CumulativeText("1*2*40")}, false},
		{"africastalking", "star_input", Request{SessionID: "ATUid_6c1d2e3f4a5b", MSISDN: "231886123456", ServiceCode: "*384*12#",
			Network: "63907", Input: CumulativeText("1*2*25*12*2026")}, false},
		// Some aggregators drop the '+'.
		{"africastalking", "no_plus", Request{SessionID: "ATUid_0a0b0c", MSISDN: "231886123456", ServiceCode: "*384*12#",
			Network: "63907", Input: CumulativeText("1")}, false},
		{"africastalking", "national_phone", Request{}, true},
		{"africastalking", "no_session", Request{}, true},

		{"jsonop", "begin", Request{SessionID: "7f3a9c", MSISDN: "231886123456", ServiceCode: "*384*12#", Network: "lonestar",
			Kind: Begin, Input: NoInput()}, false},
		// sequence 4 is the third input (1 is the begin).
		{"jsonop", "continue", Request{SessionID: "7f3a9c", MSISDN: "231886123456", ServiceCode: "*384*12#", Network: "lonestar",
			Kind: Continue, Input: LatestInput("25*12*2026", 3)}, false},
		{"jsonop", "no_sequence", Request{SessionID: "7f3a9c", MSISDN: "231886123456", ServiceCode: "*384*12#", Network: "orange",
			Kind: Continue, Input: LatestInput("2", 0)}, false},
		{"jsonop", "end", Request{SessionID: "7f3a9c", MSISDN: "231886123456", ServiceCode: "*384*12#", Kind: End, Input: NoInput()}, false},
		{"jsonop", "timeout", Request{SessionID: "7f3a9c", MSISDN: "231886123456", ServiceCode: "*384*12#", Kind: Timeout, Input: NoInput()}, false},
		{"jsonop", "bad_operation", Request{}, true},
		{"jsonop", "not_json", Request{}, true},
	}
	byName := map[string]Gateway{}
	for _, g := range gateways {
		byName[g.Name()] = g
	}
	for _, tt := range tests {
		t.Run(tt.gateway+"/"+tt.name, func(t *testing.T) {
			got, err := byName[tt.gateway].Decode(readRecorded(t, tt.gateway, tt.name))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Decode = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if got != tt.want {
				t.Errorf("Decode =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestGatewaysEncodeReplies(t *testing.T) {
	tests := []struct {
		gateway     string
		rep         Reply
		contentType string
		body        string
	}{
		{"africastalking", Reply{Text: "mHero\n1. Stock report"}, "text/plain; charset=utf-8", "CON mHero\n1. Stock report"},
		{"africastalking", Reply{Text: "Thank you.", End: true}, "text/plain; charset=utf-8", "END Thank you."},
		{"jsonop", Reply{Text: "mHero\n1. Stock report"}, "application/json", `{"operation":"continue","message":"mHero\n1. Stock report"}` + "\n"},
		{"jsonop", Reply{End: true}, "application/json", `{"operation":"end","message":""}` + "\n"},
	}
	for _, tt := range tests {
		for _, g := range gateways {
			if g.Name() != tt.gateway {
				continue
			}
			w := httptest.NewRecorder()
			if err := g.Encode(w, tt.rep); err != nil {
				t.Fatal(err)
			}
			if ct := w.Header().Get("Content-Type"); ct != tt.contentType || w.Body.String() != tt.body {
				t.Errorf("%s Encode(%+v) = %q %q, want %q %q", tt.gateway, tt.rep, ct, w.Body.String(), tt.contentType, tt.body)
			}
		}
	}
}
