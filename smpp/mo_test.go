package smpp

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
)

type moLog struct {
	mu   sync.Mutex
	mos  []MO
	dlrs []DLR
	ussd []USSDRequest
}

func (l *moLog) HandleMO(_ context.Context, m MO) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mos = append(l.mos, m)
	return nil
}

func (l *moLog) HandleReceipt(_ context.Context, d DLR) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dlrs = append(l.dlrs, d)
	return nil
}

func (l *moLog) HandleUSSD(_ context.Context, r USSDRequest) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ussd = append(l.ussd, r)
	return nil
}

func (l *moLog) lens() (int, int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mos), len(l.dlrs), len(l.ussd)
}

func ucs2(s string) []byte {
	var b []byte
	for _, r := range s {
		b = append(b, byte(r>>8), byte(r))
	}
	return b
}

func TestMO(t *testing.T) {
	type part struct {
		esm  uint8
		dc   uint8
		sm   []byte
		tlvs [][]byte
	}
	udh8 := func(ref, total, seq byte) []byte { return []byte{0x05, 0x00, 0x03, ref, total, seq} }
	udh16 := func(ref uint16, total, seq byte) []byte {
		return []byte{0x06, 0x08, 0x04, byte(ref >> 8), byte(ref), total, seq}
	}
	sar := func(ref uint16, total, seq byte) [][]byte {
		return [][]byte{tlv(0x020C, []byte{byte(ref >> 8), byte(ref)}), tlv(0x020E, []byte{total}), tlv(0x020F, []byte{seq})}
	}
	tests := []struct {
		name  string
		parts []part
		want  MO
	}{
		{"gsm7", []part{{0, 0, []byte("STOCK ORS 20"), nil}}, MO{Text: "STOCK ORS 20", Parts: 1}},
		{"ucs2", []part{{0, 8, ucs2("Merci à vous"), nil}}, MO{Text: "Merci à vous", Parts: 1, Coding: CodingUCS2}},
		{"udh 8-bit, out of order", []part{
			{0x40, 0, append(udh8(7, 3, 3), "three"...), nil},
			{0x40, 0, append(udh8(7, 3, 1), "one "...), nil},
			{0x40, 0, append(udh8(7, 3, 2), "two "...), nil},
		}, MO{Text: "one two three", Parts: 3}},
		{"udh 16-bit", []part{
			{0x40, 0, append(udh16(0x1234, 2, 1), "REFER "...), nil},
			{0x40, 0, append(udh16(0x1234, 2, 2), "patient"...), nil},
		}, MO{Text: "REFER patient", Parts: 2}},
		{"sar tlvs, ucs2 pair split across parts", []part{
			{0, 8, ucs2("ab")[:3], sar(99, 2, 1)},
			{0, 8, ucs2("ab")[3:], sar(99, 2, 2)},
		}, MO{Text: "ab", Parts: 2, Coding: CodingUCS2}},
	}
	smsc := newScriptSMSC(t, nil)
	l := &moLog{}
	startPool(t, []Config{scriptConfig(smsc)}, Handlers{MO: l})
	c := smsc.conn(0)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acked := len(smsc.delivered())
			for _, p := range tt.parts {
				c.deliver(0, p.esm, "+231881234567", "384", p.dc, p.sm, p.tlvs...)
			}
			waitFor(t, func() bool { n, _, _ := l.lens(); return n == i+1 }, "MO handed on")
			waitFor(t, func() bool { return len(smsc.delivered()) == acked+len(tt.parts) }, "every part acked")
			l.mu.Lock()
			got := l.mos[i]
			l.mu.Unlock()
			if got.Text != tt.want.Text || got.Parts != tt.want.Parts || got.Coding != tt.want.Coding || got.Partial ||
				got.From != "231881234567" || got.To != "384" || got.MNO != "script" {
				t.Errorf("MO = %+v, want %+v", got, tt.want)
			}
			for _, r := range smsc.delivered()[acked:] {
				if r.status != StatusOK {
					t.Errorf("part answered %#x", r.status)
				}
			}
		})
	}
}

func TestMOReassemblyTimeout(t *testing.T) {
	smsc := newScriptSMSC(t, nil)
	cfg := scriptConfig(smsc)
	cfg.MOReassemblyTimeout = 50 * time.Millisecond
	l := &moLog{}
	startPool(t, []Config{cfg}, Handlers{MO: l})
	smsc.conn(0).deliver(0, 0x40, "231881234567", "384", 0, append([]byte{5, 0, 3, 1, 2, 1}, "half a "...))
	waitFor(t, func() bool { n, _, _ := l.lens(); return n == 1 }, "partial MO handed on")
	if m := l.mos[0]; !m.Partial || m.Text != "half a " || m.Parts != 2 {
		t.Errorf("MO = %+v, want the partial text", m)
	}
}

func TestReceipt(t *testing.T) {
	tests := []struct {
		name      string
		format    string
		sm        []byte
		tlvs      [][]byte
		wantID    string
		wantState ReceiptState
	}{
		{"text, decimal", "decimal", receiptText("2684354561"), nil, NormalizeMessageID("A0000001", "hex"), StateDelivered},
		{"tlvs win", "hex", []byte("id:0 stat:UNKNOWN"),
			[][]byte{tlv(0x001E, []byte("A0000002\x00")), tlv(0x0427, []byte{5})}, NormalizeMessageID("2684354562", "decimal"), StateUndeliverable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			smsc := newScriptSMSC(t, nil)
			cfg := scriptConfig(smsc)
			cfg.ReceiptIDFormat = tt.format
			l := &moLog{}
			p := startPool(t, []Config{cfg}, Handlers{Receipt: l})
			smsc.conn(0).deliver(0, 0x04, "231881234567", "384", 0, tt.sm, tt.tlvs...)
			waitFor(t, func() bool { _, n, _ := l.lens(); return n == 1 }, "receipt handed on")
			if d := l.dlrs[0]; d.MessageID != tt.wantID || d.State != tt.wantState || d.MNO != "script" || d.From != "231881234567" {
				t.Errorf("DLR = %+v, want id %q state %q", d, tt.wantID, tt.wantState)
			}
			if h := p.Health()[0]; h.Receipts[string(tt.wantState)] != 1 {
				t.Errorf("Health receipts = %v", h.Receipts)
			}
		})
	}
}

func TestUSSD(t *testing.T) {
	var mu sync.Mutex
	var submits [][]byte
	smsc := newScriptSMSC(t, func(c *scriptConn, seq uint32, body []byte) {
		mu.Lock()
		submits = append(submits, body)
		mu.Unlock()
		c.respond(seq)
	})
	l := &moLog{}
	p := startPool(t, []Config{scriptConfig(smsc)}, Handlers{USSD: l})
	smsc.conn(0).deliver(0, 0, "231881234567", "*384*12#", 0, []byte("*384*12#"),
		tlv(0x0501, []byte{PSSRIndication}), tlv(0x1383, []byte{0x12, 0x34}))
	waitFor(t, func() bool { _, _, n := l.lens(); return n == 1 }, "USSD handed on")
	req := l.ussd[0]
	if req.Op != PSSRIndication || !bytes.Equal(req.SessionInfo, []byte{0x12, 0x34}) || req.Text != "*384*12#" {
		t.Fatalf("USSDRequest = %+v", req)
	}
	_, err := p.Send(t.Context(), &Message{To: req.From, MNO: req.MNO, Text: "1. Stock\n2. Referral",
		USSD: &USSDOp{Op: PSSRResponse, SessionInfo: req.SessionInfo}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(submits) != 1 || !bytes.Contains(submits[0], tlv(0x0501, []byte{17})) || !bytes.Contains(submits[0], tlv(0x1383, []byte{0x12, 0x34})) ||
		!bytes.HasPrefix(submits[0], []byte("USSD\x00")) {
		t.Errorf("submit_sm body %q: want service_type USSD, ussd_service_op 17 and its_session_info echoed", submits)
	}
	if _, err := p.Send(t.Context(), &Message{To: req.From, Text: string(make([]byte, 200)), USSD: &USSDOp{Op: USSRRequest}}); err == nil {
		t.Error("USSD reply of two segments: want an error")
	}
}

// FuzzInbound feeds arbitrary deliver_sm/data_sm bodies through the decoding an SMSC's
// PDU goes through before a handler sees it: it must never panic.
func FuzzInbound(f *testing.F) {
	// A plain MO, a receipt with TLVs, a concatenated part, a USSD PSSR indication.
	f.Add(false, deliverBody(0, "231881234567", "384", 0, []byte("STOCK ORS 20")))
	f.Add(false, deliverBody(0x04, "231881234567", "384", 0, receiptText("2684354561"),
		tlv(0x001E, []byte("A0000001\x00")), tlv(0x0427, []byte{2})))
	f.Add(false, deliverBody(0x40, "231881234567", "384", 8, append([]byte{5, 0, 3, 1, 2, 1}, 0, 'a')))
	f.Add(false, deliverBody(0, "231881234567", "*384#", 0, []byte("*384#"), tlv(0x0501, []byte{1}), tlv(0x1383, []byte{0, 1})))
	f.Add(true, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x00\x00\x00\x04\x24\x00\x02hi"))
	f.Fuzz(func(t *testing.T, dataSM bool, body []byte) {
		in := &inboundPDU{id: pdu.DeliverSMID, body: body}
		if dataSM {
			in.id = pdu.DataSMID
		}
		var d deliver
		if err := decodeInbound(in, &d); err != nil {
			return
		}
		if d.esm&0x40 != 0 {
			if _, rest, _, err := ParseUDH(d.sm); err == nil {
				decodeMO(Coding(d.dc), rest)
			}
		}
		decodeMO(Coding(d.dc), d.sm)
		r, _ := ParseReceiptText(string(d.sm))
		ReceiptFromTLVs(r, d.tlvBytes(0x001E), d.tlvBytes(0x0427))
	})
}
