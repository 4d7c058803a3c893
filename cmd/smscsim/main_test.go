package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/mhero-health/mhero/smpp/smpptest"
)

// start runs the simulator on free ports and stops it when the test ends.
func start(t *testing.T, args ...string) (smppAddr, httpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type addrs struct{ smpp, http string }
	ready := make(chan addrs, 1)
	done := make(chan error, 1)
	args = append([]string{"-addr", "127.0.0.1:0", "-http", "127.0.0.1:0", "-log-level", "warn"}, args...)
	go func() {
		done <- run(ctx, args, io.Discard, func(s, h string) { ready <- addrs{s, h} })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	select {
	case a := <-ready:
		return a.smpp, a.http
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("simulator did not start")
	}
	return "", ""
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
	}{
		{"defaults", nil, false},
		{"everything", []string{"-receipts", "-receipt-mix", "DELIVRD=0.9,UNDELIV=0.1", "-id-format", "hex",
			"-throttle-tps", "200", "-latency", "5ms", "-drop-every", "100", "-reject-binds"}, false},
		{"bad id format", []string{"-id-format", "octal"}, true},
		{"bad mix", []string{"-receipt-mix", "DELIVRD"}, true},
		{"stray argument", []string{"extra"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Errorf("parseFlags(%q) error = %v, wantErr %v", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestControlEndpoint(t *testing.T) {
	smppAddr, httpAddr := start(t, "-system-id", "mhero")
	base := "http://" + httpAddr

	t.Run("mo without receiver", func(t *testing.T) {
		resp, err := http.PostForm(base+"/mo", url.Values{"from": {"231880000001"}, "to": {"384"}, "text": {"hi"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("status = %d, want 503", resp.StatusCode)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		resp, err := http.PostForm(base+"/ussd", url.Values{"from": {"1"}, "to": {"2"}, "op": {"300"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %d, want 400", resp.StatusCode)
		}
	})

	// Bind a receiver with go-smpp's codec, inject an MO by JSON, acknowledge it.
	nc, err := net.Dial("tcp", smppAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(nc)
	bind := pdu.NewBindReceiver()
	bind.Fields().Set(pdufield.SystemID, "mhero")
	bind.Header().Seq = 1
	if err := bind.SerializeTo(nc); err != nil {
		t.Fatal(err)
	}
	if p, err := pdu.Decode(r); err != nil || p.Header().Status != 0 {
		t.Fatalf("bind: %v %v", p, err)
	}
	type result struct {
		code int
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/mo", "application/json",
			strings.NewReader(`{"from":"231880000001","to":"384","text":"STOCK ORS 20"}`))
		if err != nil {
			res <- result{0, err}
			return
		}
		resp.Body.Close()
		res <- result{resp.StatusCode, nil}
	}()
	d, err := pdu.Decode(r)
	if err != nil || d.Header().ID != pdu.DeliverSMID {
		t.Fatalf("want deliver_sm: %v %v", d, err)
	}
	if got := d.Fields()[pdufield.ShortMessage].String(); got != "STOCK ORS 20" {
		t.Errorf("MO text = %q", got)
	}
	if err := pdu.NewDeliverSMRespSeq(d.Header().Seq).SerializeTo(nc); err != nil {
		t.Fatal(err)
	}
	if got := <-res; got.err != nil || got.code != http.StatusOK {
		t.Fatalf("POST /mo = %d, %v", got.code, got.err)
	}

	resp, err := http.Get(base + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st smpptest.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if st.Binds != 1 || st.MOSent != 1 || st.DeliverAcked != 1 {
		t.Errorf("stats = %+v", st)
	}
}
