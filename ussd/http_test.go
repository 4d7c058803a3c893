package ussd_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/mhero-health/mhero/ussd"
)

func TestHandlerAuthenticatesEachGateway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	form := url.Values{"sessionId": {"auth-1"}, "phoneNumber": {"+231886000001"}, "text": {""}}.Encode()
	tests := []struct {
		name   string
		cfg    ussd.GatewayConfig
		header map[string]string
		query  string
		want   int
	}{
		{"allowed address", ussd.GatewayConfig{Allow: loopback}, nil, "", http.StatusOK},
		{"address not allowed", ussd.GatewayConfig{Allow: elsewhere}, nil, "", http.StatusForbidden},
		{"secret in header", ussd.GatewayConfig{Secret: "k"}, map[string]string{"X-Mhero-Secret": "k"}, "", http.StatusOK},
		{"secret as bearer", ussd.GatewayConfig{Secret: "k"}, map[string]string{"Authorization": "Bearer k"}, "", http.StatusOK},
		{"secret in the callback URL", ussd.GatewayConfig{Secret: "k"}, nil, "?secret=k", http.StatusOK},
		{"wrong secret", ussd.GatewayConfig{Secret: "k"}, map[string]string{"X-Mhero-Secret": "nope"}, "", http.StatusForbidden},
		{"no secret", ussd.GatewayConfig{Secret: "k"}, nil, "", http.StatusForbidden},
		{"both, secret missing", ussd.GatewayConfig{Allow: loopback, Secret: "k"}, nil, "", http.StatusForbidden},
		{"both, address wrong", ussd.GatewayConfig{Allow: elsewhere, Secret: "k"}, map[string]string{"X-Mhero-Secret": "k"}, "", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ussd.NewHandler(e.Engine, ussd.HTTPConfig{Gateways: map[string]ussd.GatewayConfig{"africastalking": tt.cfg}})
			if err != nil {
				t.Fatal(err)
			}
			r := mux.NewRouter()
			h.Register(r)
			req := httptest.NewRequest(http.MethodPost, "/ussd/africastalking"+tt.query, strings.NewReader(form))
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Errorf("status %d (%q), want %d", w.Code, w.Body.String(), tt.want)
			}
		})
	}
}

func TestHandlerRefusesBadRequestsClearly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"no phone number", http.MethodPost, "/ussd/africastalking", "sessionId=x&text=", http.StatusBadRequest},
		{"not a form", http.MethodPost, "/ussd/africastalking", "%%%", http.StatusBadRequest},
		{"GET", http.MethodGet, "/ussd/africastalking", "", http.StatusMethodNotAllowed},
		{"unknown gateway", http.MethodPost, "/ussd/nope", "", http.StatusNotFound},
		{"body over the limit", http.MethodPost, "/ussd/africastalking", "sessionId=x&phoneNumber=%2B231886000001&text=" + strings.Repeat("1", 20000), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, e.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := e.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestNewHandlerRefusesAnOpenOrUnknownGateway(t *testing.T) {
	e := &ussd.Engine{}
	for name, cfg := range map[string]map[string]ussd.GatewayConfig{
		"no allow-list, no secret": {"africastalking": {}},
		"unknown gateway":          {"smoke-signals": {Secret: "k"}},
		"limit too small":          {"jsonop": {Secret: "k", ScreenLimit: 60}},
	} {
		if _, err := ussd.NewHandler(e, ussd.HTTPConfig{Gateways: cfg}); err == nil {
			t.Errorf("%s: NewHandler accepted %+v", name, cfg)
		}
	}
}
