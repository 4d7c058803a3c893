package smpptest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/mhero-health/mhero/smpp/internal/smbody"
)

// rawClient is the smallest SMPP client: go-smpp's codec over a net.Conn, no session
// logic, so the tests see exactly what the server writes.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
}

func dial(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}
}

func (c *rawClient) write(p pdu.Body, seq uint32) {
	c.t.Helper()
	p.Header().Seq = seq
	if err := p.SerializeTo(c.w); err != nil {
		c.t.Fatalf("serialize %s: %v", p.Header().ID, err)
	}
	if err := c.w.Flush(); err != nil {
		c.t.Fatalf("write %s: %v", p.Header().ID, err)
	}
}

func (c *rawClient) writeRaw(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns the next PDU, failing the test after 3 s.
func (c *rawClient) read() pdu.Body {
	c.t.Helper()
	p, err := c.tryRead(3 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

func (c *rawClient) tryRead(d time.Duration) (pdu.Body, error) {
	c.nc.SetReadDeadline(time.Now().Add(d))
	return pdu.Decode(c.r)
}

func (c *rawClient) bind(id pdu.ID, seq uint32, systemID, password string) pdu.Body {
	c.t.Helper()
	var p pdu.Body
	switch id {
	case pdu.BindReceiverID:
		p = pdu.NewBindReceiver()
	case pdu.BindTransceiverID:
		p = pdu.NewBindTransceiver()
	default:
		p = pdu.NewBindTransmitter()
	}
	p.Fields().Set(pdufield.SystemID, systemID)
	p.Fields().Set(pdufield.Password, password)
	p.Fields().Set(pdufield.InterfaceVersion, uint8(0x34))
	c.write(p, seq)
	return c.read()
}

func (c *rawClient) submit(seq uint32, dst, text string, registered uint8, tlvs pdutlv.Fields) {
	c.t.Helper()
	p := pdu.NewSubmitSM(tlvs)
	f := p.Fields()
	f.Set(pdufield.SourceAddr, "384")
	f.Set(pdufield.DestinationAddr, dst)
	f.Set(pdufield.RegisteredDelivery, registered)
	f.Set(pdufield.ShortMessage, []byte(text))
	c.write(p, seq)
}

func mustBind(t *testing.T, c *rawClient, id pdu.ID) {
	t.Helper()
	if r := c.bind(id, 1, "mhero", "secret"); r.Header().Status != 0 {
		t.Fatalf("bind status = %#x", uint32(r.Header().Status))
	}
}

func messageID(p pdu.Body) string {
	if f, ok := p.Fields()[pdufield.MessageID]; ok {
		return f.String()
	}
	return ""
}

func shortMessage(p pdu.Body) string {
	if f, ok := p.Fields()[pdufield.ShortMessage]; ok {
		return f.String()
	}
	return ""
}

func TestBind(t *testing.T) {
	srv := NewServer(Config{SystemID: "mhero", Password: "secret"})
	defer srv.Close()
	tests := []struct {
		name string
		id   pdu.ID
	}{
		{"transmitter", pdu.BindTransmitterID},
		{"receiver", pdu.BindReceiverID},
		{"transceiver", pdu.BindTransceiverID},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, srv.Addr())
			seq := uint32(100 + i)
			r := c.bind(tt.id, seq, "mhero", "secret")
			h := r.Header()
			if h.ID != tt.id|0x80000000 || h.Seq != seq || h.Status != 0 {
				t.Fatalf("bind resp = %s seq %d status %#x; want %s seq %d status 0", h.ID, h.Seq, uint32(h.Status), tt.id|0x80000000, seq)
			}
			// A second bind on a bound connection: its own resp type, its own seq, ESME_RALYBND.
			r = c.bind(tt.id, seq+50, "mhero", "secret")
			h = r.Header()
			if h.ID != tt.id|0x80000000 || h.Seq != seq+50 || h.Status != 0x05 {
				t.Fatalf("second bind resp = %s seq %d status %#x; want seq %d status 0x05", h.ID, h.Seq, uint32(h.Status), seq+50)
			}
		})
	}
	if got := srv.Stats().Binds; got != 3 {
		t.Errorf("Stats().Binds = %d, want 3", got)
	}
}

func TestBindRejected(t *testing.T) {
	tests := []struct {
		name     string
		cfg      Config
		sys, pwd string
		want     pdu.Status
	}{
		{"wrong password", Config{SystemID: "mhero", Password: "secret"}, "mhero", "nope", 0x0E},
		{"wrong system_id", Config{SystemID: "mhero", Password: "secret"}, "other", "secret", 0x0F},
		{"reject binds", Config{RejectBinds: true}, "mhero", "secret", 0x0D},
		{"any password", Config{SystemID: "mhero"}, "mhero", "whatever", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewServer(tt.cfg)
			defer srv.Close()
			c := dial(t, srv.Addr())
			r := c.bind(pdu.BindTransceiverID, 7, tt.sys, tt.pwd)
			if h := r.Header(); h.Status != tt.want || h.Seq != 7 || h.ID != pdu.BindTransceiverRespID {
				t.Errorf("bind resp = %s seq %d status %#x, want status %#x", h.ID, h.Seq, uint32(h.Status), uint32(tt.want))
			}
		})
	}
}

// readSubmitsAndReceipts reads n submit_sm_resp and n deliver_sm, acknowledging the
// deliver_sm, in whatever order they come.
func readSubmitsAndReceipts(t *testing.T, c *rawClient, n int) (resps, receipts []pdu.Body, order []pdu.ID) {
	t.Helper()
	for len(resps) < n || len(receipts) < n {
		p := c.read()
		order = append(order, p.Header().ID)
		switch p.Header().ID {
		case pdu.SubmitSMRespID:
			resps = append(resps, p)
		case pdu.DeliverSMID:
			receipts = append(receipts, p)
			c.write(pdu.NewDeliverSMResp(), p.Header().Seq)
		default:
			t.Fatalf("unexpected %s", p.Header().ID)
		}
	}
	return resps, receipts, order
}

func TestReceiptsNumberedFromOne(t *testing.T) {
	srv := NewServer(Config{Receipts: true})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	for seq := uint32(1); seq <= 3; seq++ {
		c.submit(seq, "231880000001", "Stock ORS 20", 1, nil)
	}
	resps, receipts, _ := readSubmitsAndReceipts(t, c, 3)
	ids := map[string]bool{}
	for i, r := range resps {
		if r.Header().Seq != uint32(i+1) || r.Header().Status != 0 {
			t.Errorf("resp %d: seq %d status %#x", i, r.Header().Seq, uint32(r.Header().Status))
		}
		ids[messageID(r)] = true
	}
	for i, d := range receipts {
		// The SMSC's own numbering collides with the client's submit_sm numbers.
		if d.Header().Seq != uint32(i+1) {
			t.Errorf("receipt %d seq = %d, want %d", i, d.Header().Seq, i+1)
		}
		text := shortMessage(d)
		id, _, _ := strings.Cut(strings.TrimPrefix(text, "id:"), " ")
		if !ids[id] || !strings.Contains(text, "stat:DELIVRD") || !strings.Contains(text, "text:Stock ORS 20") {
			t.Errorf("receipt %d = %q, ids %v", i, text, ids)
		}
		if esm := d.Fields()[pdufield.ESMClass].Raw().(uint8); esm != 0x04 {
			t.Errorf("receipt esm_class = %#x, want 0x04", esm)
		}
	}
	waitFor(t, func() bool { return srv.Stats().DeliverAcked == 3 })
	if got := len(srv.Submits()); got != 3 {
		t.Errorf("Submits() = %d, want 3", got)
	}
	if st := srv.Stats(); st.Accepted != 3 || st.ReceiptsSent != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestHexIDsAndTLVs(t *testing.T) {
	srv := NewServer(Config{Receipts: true, MessageIDFormat: "hex", ReceiptIDFormat: "decimal", ReceiptTLVs: true,
		ReceiptStates: map[string]float64{"UNDELIV": 1}})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	c.submit(2, "231880000001", "hi", 1, nil)
	resps, receipts, _ := readSubmitsAndReceipts(t, c, 1)
	if got := messageID(resps[0]); got != "A0000001" {
		t.Errorf("submit_sm_resp id = %q, want A0000001", got)
	}
	d := receipts[0]
	if text := shortMessage(d); !strings.HasPrefix(text, "id:2684354561 ") || !strings.Contains(text, "stat:UNDELIV") {
		t.Errorf("receipt text = %q", text)
	}
	tlv := d.TLVFields()
	if got := tlv[pdutlv.TagReceiptedMessageID].String(); got != "2684354561" {
		t.Errorf("receipted_message_id = %q", got)
	}
	if got := tlv[pdutlv.TagMessageStateOption].Bytes(); len(got) != 1 || got[0] != 5 {
		t.Errorf("message_state = % x, want 05", got)
	}
}

func TestReceiptBeforeResp(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"immediate", Config{Receipts: true, ReceiptBeforeResp: true}},
		{"with latency and delay", Config{Receipts: true, ReceiptBeforeResp: true, Latency: 5 * time.Millisecond, ReceiptDelay: 20 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := NewServer(tt.cfg)
			defer srv.Close()
			c := dial(t, srv.Addr())
			mustBind(t, c, pdu.BindTransceiverID)
			c.submit(1, "231880000001", "x", 1, nil)
			_, _, order := readSubmitsAndReceipts(t, c, 1)
			if order[0] != pdu.DeliverSMID {
				t.Errorf("order = %v, want the receipt first", order)
			}
		})
	}
}

func TestReceiptOnReceiverBind(t *testing.T) {
	srv := NewServer(Config{Receipts: true, ReceiptDelay: 10 * time.Millisecond})
	defer srv.Close()
	tx := dial(t, srv.Addr())
	mustBind(t, tx, pdu.BindTransmitterID)
	tx.submit(1, "231880000001", "x", 1, nil)
	if r := tx.read(); r.Header().ID != pdu.SubmitSMRespID {
		t.Fatalf("got %s", r.Header().ID)
	}
	// No receiver yet: the receipt waits, then goes to the receiver when it binds.
	waitFor(t, func() bool { return srv.Stats().ReceiptsQueued == 1 })
	rx := dial(t, srv.Addr())
	mustBind(t, rx, pdu.BindReceiverID)
	if d := rx.read(); d.Header().ID != pdu.DeliverSMID || d.Header().Seq != 1 {
		t.Fatalf("receiver got %s seq %d", d.Header().ID, d.Header().Seq)
	}
}

func TestThrottle(t *testing.T) {
	srv := NewServer(Config{ThrottleTPS: 5})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransmitterID)
	for seq := uint32(1); seq <= 10; seq++ {
		c.submit(seq, "231880000001", "x", 0, nil)
	}
	var ok, throttled int
	for range 10 {
		switch s := c.read().Header().Status; s {
		case 0:
			ok++
		case 0x58:
			throttled++
		default:
			t.Errorf("status %#x", uint32(s))
		}
	}
	if ok != 5 || throttled != 5 {
		t.Errorf("ok %d, throttled %d; want 5 and 5", ok, throttled)
	}
	if st := srv.Stats(); st.Throttled != 5 || st.Accepted != 5 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestMaxWindow(t *testing.T) {
	srv := NewServer(Config{MaxWindow: 2, Latency: 100 * time.Millisecond})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	for seq := uint32(1); seq <= 4; seq++ {
		c.submit(seq, "231880000001", "x", 0, nil)
	}
	got := map[uint32]pdu.Status{}
	for range 4 {
		h := c.read().Header()
		got[h.Seq] = h.Status
	}
	want := map[uint32]pdu.Status{1: 0, 2: 0, 3: 0x14, 4: 0x14}
	for seq, st := range want {
		if got[seq] != st {
			t.Errorf("seq %d status %#x, want %#x", seq, uint32(got[seq]), uint32(st))
		}
	}
	if m := srv.Stats().MaxInFlight; m != 2 {
		t.Errorf("MaxInFlight = %d, want 2", m)
	}
}

func TestScriptedStatusAndNoResponse(t *testing.T) {
	srv := NewServer(Config{
		SubmitStatus:  func(sm Submit) uint32 { return map[bool]uint32{true: 0x0B}[sm.Dst == "000"] },
		NoResponseFor: func(sm Submit) bool { return sm.Dst == "999" },
	})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	c.submit(1, "999", "x", 0, nil)
	c.submit(2, "000", "x", 0, nil)
	c.submit(3, "231880000001", "x", 0, nil)
	if h := c.read().Header(); h.Seq != 2 || h.Status != 0x0B {
		t.Errorf("got seq %d status %#x, want seq 2 status 0x0B", h.Seq, uint32(h.Status))
	}
	if h := c.read().Header(); h.Seq != 3 || h.Status != 0 {
		t.Errorf("got seq %d status %#x, want seq 3 status 0", h.Seq, uint32(h.Status))
	}
	if _, err := c.tryRead(50 * time.Millisecond); err == nil {
		t.Error("seq 1 was answered")
	}
	if sub := srv.Submits(); len(sub) != 1 || sub[0].Seq != 3 {
		t.Errorf("Submits() = %+v", sub)
	}
}

func TestDropEvery(t *testing.T) {
	srv := NewServer(Config{DropEvery: 3})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID) // PDU 1
	c.submit(2, "231880000001", "x", 0, nil)
	if h := c.read().Header(); h.Seq != 2 {
		t.Fatalf("seq %d", h.Seq)
	}
	c.submit(3, "231880000001", "x", 0, nil) // PDU 3: dropped unanswered
	if p, err := c.tryRead(time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after the third PDU: %v, %v; want EOF", p, err)
	}
	waitFor(t, func() bool { return srv.Stats().Drops == 1 && srv.Stats().Conns == 0 })
}

func TestProtocolErrors(t *testing.T) {
	srv := NewServer(Config{})
	defer srv.Close()
	t.Run("unknown command", func(t *testing.T) {
		c := dial(t, srv.Addr())
		c.write(pdu.NewQuerySM(), 9)
		if h := c.read().Header(); h.ID != pdu.GenericNACKID || h.Seq != 9 || h.Status != 0x03 {
			t.Errorf("got %s seq %d status %#x", h.ID, h.Seq, uint32(h.Status))
		}
	})
	t.Run("submit before bind", func(t *testing.T) {
		c := dial(t, srv.Addr())
		c.submit(4, "231880000001", "x", 0, nil)
		if h := c.read().Header(); h.ID != pdu.SubmitSMRespID || h.Seq != 4 || h.Status != 0x04 {
			t.Errorf("got %s seq %d status %#x", h.ID, h.Seq, uint32(h.Status))
		}
	})
	t.Run("submit on receiver", func(t *testing.T) {
		c := dial(t, srv.Addr())
		mustBind(t, c, pdu.BindReceiverID)
		c.submit(5, "231880000001", "x", 0, nil)
		if h := c.read().Header(); h.Status != 0x04 {
			t.Errorf("status %#x, want 0x04", uint32(h.Status))
		}
	})
	t.Run("malformed body", func(t *testing.T) {
		c := dial(t, srv.Addr())
		mustBind(t, c, pdu.BindTransceiverID)
		body := []byte{0, 1, 1, 'a', 0, 1, 1, 'b', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 'x'} // sm_length 200, one octet
		b := binary.BigEndian.AppendUint32(nil, uint32(16+len(body)))
		b = binary.BigEndian.AppendUint32(b, uint32(pdu.SubmitSMID))
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 6)
		b = append(b, body...)
		c.writeRaw(b)
		if h := c.read().Header(); h.Seq != 6 || h.Status == 0 {
			t.Errorf("got %s seq %d status %#x, want an error for seq 6", h.ID, h.Seq, uint32(h.Status))
		}
	})
	t.Run("oversized", func(t *testing.T) {
		c := dial(t, srv.Addr())
		b := binary.BigEndian.AppendUint32(nil, 1<<30)
		b = binary.BigEndian.AppendUint32(b, uint32(pdu.SubmitSMID))
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 8)
		c.writeRaw(b)
		if h := c.read().Header(); h.ID != pdu.GenericNACKID || h.Seq != 8 || h.Status != 0x02 {
			t.Errorf("got %s seq %d status %#x", h.ID, h.Seq, uint32(h.Status))
		}
		if _, err := c.tryRead(time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("connection still open: %v", err)
		}
	})
	t.Run("enquire_link and unbind", func(t *testing.T) {
		c := dial(t, srv.Addr())
		mustBind(t, c, pdu.BindTransceiverID)
		c.write(pdu.NewEnquireLink(), 11)
		if h := c.read().Header(); h.ID != pdu.EnquireLinkRespID || h.Seq != 11 {
			t.Errorf("got %s seq %d", h.ID, h.Seq)
		}
		c.write(pdu.NewUnbind(), 12)
		if h := c.read().Header(); h.ID != pdu.UnbindRespID || h.Seq != 12 {
			t.Errorf("got %s seq %d", h.ID, h.Seq)
		}
		if _, err := c.tryRead(time.Second); !errors.Is(err, io.EOF) {
			t.Errorf("connection still open after unbind: %v", err)
		}
	})
}

func TestDeliverMO(t *testing.T) {
	srv := NewServer(Config{})
	defer srv.Close()
	ctx := context.Background()
	if err := srv.DeliverMO(ctx, "231880000001", "384", "x"); !errors.Is(err, ErrNoReceiver) {
		t.Fatalf("DeliverMO without a receiver = %v", err)
	}
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	tests := []struct {
		name  string
		text  string
		parts int
		dc    uint8
	}{
		{"short gsm", "STOCK ORS 20", 1, 0x00},
		{"long gsm", strings.Repeat("REFER 12 fever ", 12), 2, 0x00},
		{"ucs2", "Ripoti: 😀 sawa", 1, 0x08},
		{"long ucs2", strings.Repeat("ж", 71), 2, 0x08},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- srv.DeliverMO(ctx, "231880000001", "384", tt.text) }()
			var body []byte
			for i := range tt.parts {
				d := c.read()
				f := d.Fields()
				if d.Header().ID != pdu.DeliverSMID || f[pdufield.DataCoding].Raw().(uint8) != tt.dc {
					t.Fatalf("part %d: %s dc %v", i, d.Header().ID, f[pdufield.DataCoding])
				}
				esm := f[pdufield.ESMClass].Raw().(uint8)
				if (tt.parts > 1) != (esm&0x40 != 0) {
					t.Errorf("part %d esm_class %#x", i, esm)
				}
				if tt.parts > 1 {
					// go-smpp splits the UDH off into gsm_sms_ud.udh.
					udh := f[pdufield.GSMUserData].(*pdufield.UDHList).Data
					if len(udh) != 1 || udh[0].IEData.Data[1] != byte(tt.parts) || udh[0].IEData.Data[2] != byte(i+1) {
						t.Errorf("part %d UDH %+v", i, udh)
					}
				}
				body = append(body, f[pdufield.ShortMessage].Bytes()...)
				c.write(pdu.NewDeliverSMResp(), d.Header().Seq)
			}
			if err := <-errc; err != nil {
				t.Fatalf("DeliverMO: %v", err)
			}
			if tt.dc == 0 && string(body) != tt.text {
				t.Errorf("body = %q, want %q", body, tt.text)
			}
		})
	}
}

func TestDeliverUSSDAndHook(t *testing.T) {
	replies := make(chan Submit, 1)
	srv := NewUnstartedServer(Config{})
	srv.OnSubmit(func(sm Submit) {
		if _, ok := sm.USSDServiceOp(); ok {
			replies <- sm
		}
	})
	srv.Start()
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	errc := make(chan error, 1)
	go func() {
		errc <- srv.DeliverUSSD(context.Background(), "231880000001", "*384*12#", "*384*12#", 1, []byte{0x12, 0x00})
	}()
	d := c.read()
	tlv := d.TLVFields()
	if op := tlv[pdutlv.TagUssdServiceOp].Bytes(); len(op) != 1 || op[0] != 1 {
		t.Errorf("ussd_service_op = % x", op)
	}
	if si := tlv[pdutlv.TagItsSessionInfo].Bytes(); string(si) != "\x12\x00" {
		t.Errorf("its_session_info = % x", si)
	}
	if st := d.Fields()[pdufield.ServiceType].String(); st != "USSD" {
		t.Errorf("service_type = %q", st)
	}
	c.write(pdu.NewDeliverSMResp(), d.Header().Seq)
	if err := <-errc; err != nil {
		t.Fatalf("DeliverUSSD: %v", err)
	}
	c.submit(1, "231880000001", "1. Stock\n2. Refer", 0, pdutlv.Fields{pdutlv.TagUssdServiceOp: uint8(2)})
	c.read()
	select {
	case sm := <-replies:
		if op, _ := sm.USSDServiceOp(); op != 2 || string(sm.ShortMessage) != "1. Stock\n2. Refer" {
			t.Errorf("hook got op %d %q", op, sm.ShortMessage)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("hook not called")
	}
}

func TestDeliverResentOnce(t *testing.T) {
	srv := NewServer(Config{DeliverTimeout: 40 * time.Millisecond})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransceiverID)
	errc := make(chan error, 1)
	go func() { errc <- srv.DeliverMO(context.Background(), "231880000001", "384", "hi") }()
	first := c.read() // not acknowledged
	second := c.read()
	if first.Header().Seq == second.Header().Seq || shortMessage(first) != shortMessage(second) {
		t.Errorf("resend seq %d -> %d", first.Header().Seq, second.Header().Seq)
	}
	c.write(pdu.NewDeliverSMResp(), second.Header().Seq)
	if err := <-errc; err != nil {
		t.Fatalf("DeliverMO: %v", err)
	}
	if st := srv.Stats(); st.DeliverResent != 1 || st.DeliverAcked != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestCloseStopsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	srv := NewServer(Config{Receipts: true, ReceiptDelay: time.Hour, Latency: time.Millisecond})
	for range 3 { // three receivers bound; the MO goes to one of them, and none answers
		c := dial(t, srv.Addr())
		mustBind(t, c, pdu.BindTransceiverID)
		c.submit(2, "231880000001", "x", 1, nil)
		c.read()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.DeliverMO(context.Background(), "1", "2", "never acked") }()
	waitFor(t, func() bool { return srv.Stats().MOSent == 1 })
	srv.Close()
	if err := <-errc; err == nil {
		t.Error("DeliverMO succeeded after Close")
	}
	srv.Close() // twice is fine
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

func TestSubmitHistory(t *testing.T) {
	srv := NewServer(Config{SubmitHistory: 2})
	defer srv.Close()
	c := dial(t, srv.Addr())
	mustBind(t, c, pdu.BindTransmitterID)
	for seq := uint32(1); seq <= 5; seq++ {
		c.submit(seq, "231880000001", "x", 0, nil)
		c.read()
	}
	sub := srv.Submits()
	if len(sub) < 2 || len(sub) > 4 || sub[len(sub)-1].Seq != 5 {
		t.Errorf("Submits() = %d, last %+v", len(sub), sub[len(sub)-1])
	}
}

func TestParseReceiptMix(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"DELIVRD=0.9,UNDELIV=0.1", 2, false},
		{" DELIVRD = 1 , ", 1, false},
		{"DELIVRD", 0, true},
		{"DELIVRD=-1", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := ParseReceiptMix(tt.in)
			if (err != nil) != tt.wantErr || len(m) != tt.want {
				t.Errorf("ParseReceiptMix(%q) = %v, %v", tt.in, m, err)
			}
		})
	}
	p := newStatPicker(map[string]float64{"DELIVRD": 0.9, "UNDELIV": 0.1})
	n := 0
	for i := range uint64(10000) {
		if p.pick(i) == "UNDELIV" {
			n++
		}
	}
	if n < 800 || n > 1200 {
		t.Errorf("UNDELIV drawn %d times in 10000, want about 1000", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkSubmit measures submit_sm through one bind with a window of 100 submits in
// flight, the raw client pipelining on go-smpp's codec.
func BenchmarkSubmit(b *testing.B) {
	for _, receipts := range []bool{false, true} {
		name := "no-receipts"
		if receipts {
			name = "receipts"
		}
		b.Run(name, func(b *testing.B) {
			srv := NewServer(Config{Receipts: receipts, SubmitHistory: -1})
			defer srv.Close()
			c := dial(b, srv.Addr())
			if r := c.bind(pdu.BindTransceiverID, 1, "mhero", ""); r.Header().Status != 0 {
				b.Fatal("bind")
			}
			c.nc.SetReadDeadline(time.Time{})
			const window = 100
			slots := make(chan struct{}, window)
			var wg sync.WaitGroup
			wg.Add(1)
			var mu sync.Mutex // guards c.w: submits here, acknowledgements from the reader
			go func() {       // reader: frees a slot per response, acknowledges receipts
				defer wg.Done()
				for {
					p, err := pdu.Decode(c.r)
					if err != nil {
						return
					}
					switch p.Header().ID {
					case pdu.SubmitSMRespID:
						<-slots
					case pdu.DeliverSMID:
						mu.Lock()
						pdu.NewDeliverSMRespSeq(p.Header().Seq).SerializeTo(c.w)
						c.w.Flush()
						mu.Unlock()
					}
				}
			}()
			b.ReportAllocs()
			start := time.Now()
			seq := uint32(1)
			for b.Loop() {
				slots <- struct{}{}
				seq++
				p := pdu.NewSubmitSM(nil)
				p.Header().Seq = seq
				p.Fields().Set(pdufield.SourceAddr, "384")
				p.Fields().Set(pdufield.DestinationAddr, "231880000001")
				p.Fields().Set(pdufield.RegisteredDelivery, uint8(1))
				p.Fields().Set(pdufield.ShortMessage, []byte("Reminder: report stock"))
				mu.Lock()
				p.SerializeTo(c.w)
				if len(slots) == cap(slots) || seq%16 == 0 {
					c.w.Flush()
				}
				mu.Unlock()
			}
			mu.Lock()
			c.w.Flush()
			mu.Unlock()
			for len(slots) > 0 {
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
			c.nc.Close()
			wg.Wait()
		})
	}
}

// FuzzDecodeFrame feeds the frames the SMSC decodes (bind, submit_sm) to go-smpp's codec
// and to the submit_sm decoding: no panic may escape, whatever the body. (smbody's
// FuzzDecode holds the submit_sm decoding equal to go-smpp's.)
func FuzzDecodeFrame(f *testing.F) {
	frame := func(id pdu.ID, body []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(16+len(body)))
		b = binary.BigEndian.AppendUint32(b, uint32(id))
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 1)
		return append(b, body...)
	}
	f.Add(frame(pdu.BindTransceiverID, []byte("mhero\x00secret\x00\x00\x34\x00\x00\x00")))                              // a normal bind
	f.Add(frame(pdu.SubmitSMID, []byte{0, 1, 1, '3', 0, 1, 1, '2', 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 3, 5, 0, 3, 1}))       // UDHI with a short UDH
	f.Add(frame(pdu.SubmitSMID, []byte{0, 1, 1, '3', 0, 1, 1, '2', 0, 0, 0, 0, 0, 0, 1, 0, 8, 0, 2, 0, 0x41, 5, 1, 0})) // TLV overrunning the PDU
	f.Add(frame(pdu.SubmitSMID, nil))                                                                                   // empty body
	f.Fuzz(func(t *testing.T, b []byte) {
		var br bytes.Reader
		decodeFrame(&br, b)
		if len(b) >= pdu.HeaderLen {
			var f smbody.Fields
			decodeSubmit(b, &f)
		}
	})
}
