package smpp

import (
	"bytes"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// encodeSubmitCodec is the reference: the same submit_sm through go-smpp's codec.
func encodeSubmitCodec(t *testing.T, cfg *Config, m *Message, seg Segment) []byte {
	t.Helper()
	p := pdu.NewSubmitSM(nil)
	p.Header().Seq = 0
	f := p.Fields()
	from, ton, npi := cfg.SourceAddr, cfg.SourceTON, cfg.SourceNPI
	if m.From != "" {
		from, ton, npi = m.From, 5, 0
	}
	var esm, reg uint8
	if len(seg.UDH) > 0 {
		esm = 0x40
	}
	if m.RequestReceipt {
		reg = 1
	}
	v := m.Validity
	if v == 0 {
		v = cfg.Validity
	}
	f.Set(pdufield.SourceAddrTON, ton)
	f.Set(pdufield.SourceAddrNPI, npi)
	f.Set(pdufield.SourceAddr, from)
	f.Set(pdufield.DestAddrTON, uint8(1))
	f.Set(pdufield.DestAddrNPI, uint8(1))
	f.Set(pdufield.DestinationAddr, string(m.To))
	f.Set(pdufield.ESMClass, esm)
	f.Set(pdufield.PriorityFlag, uint8(m.Priority))
	f.Set(pdufield.ValidityPeriod, string(appendRelativeValidity(nil, v)))
	f.Set(pdufield.RegisteredDelivery, reg)
	f.Set(pdufield.DataCoding, uint8(seg.Coding))
	f.Set(pdufield.ShortMessage, append(append([]byte(nil), seg.UDH...), seg.Payload...))
	var b bytes.Buffer
	if err := p.SerializeTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestEncodeSubmitMatchesCodec(t *testing.T) {
	cfg := Config{Name: "x", Host: "h", SystemID: "s", SourceAddr: "384"}.withDefaults()
	long := "Reminder: the monthly stock report for your facility is due on Friday. Reply STOCK followed by the item code and quantity, e.g. STOCK ORS 20. Thank you."
	tests := []struct {
		name string
		m    Message
	}{
		{"short gsm7", Message{To: "231881234567", Text: "hello"}},
		{"receipt, priority, own validity", Message{To: "231881234567", Text: "hi", RequestReceipt: true, Priority: 2, Validity: 90 * time.Minute}},
		{"alphanumeric sender", Message{To: "231881234567", Text: "hi", From: "MOH"}},
		{"ucs2", Message{To: "231881234567", Text: "“quoted” – ok"}},
		{"concatenated", Message{To: "231881234567", Text: long + long}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			segs, err := SplitText(tt.m.Text, 7, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i, seg := range segs {
				got, err := encodeSubmit(&cfg, &tt.m, seg)
				if err != nil {
					t.Fatal(err)
				}
				if want := encodeSubmitCodec(t, &cfg, &tt.m, seg); !bytes.Equal(got, want) {
					t.Errorf("segment %d:\n got %x\nwant %x", i, got, want)
				}
			}
		})
	}
}

func TestEncodeSubmitUSSD(t *testing.T) {
	cfg := Config{Name: "x", Host: "h", SystemID: "s", SourceAddr: "384"}.withDefaults()
	m := Message{To: "231881234567", Text: "1. Stock", USSD: &USSDOp{Op: USSRRequest, SessionInfo: []byte{0x12, 0x35}}}
	segs, _ := SplitText(m.Text, 0, 0)
	frame, err := encodeSubmit(&cfg, &m, segs[0])
	if err != nil {
		t.Fatal(err)
	}
	p, err := pdu.Decode(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("go-smpp cannot decode our submit_sm: %v", err)
	}
	f, tl := p.Fields(), p.TLVFields()
	if f[pdufield.ServiceType].String() != "USSD" || string(f[pdufield.ShortMessage].Bytes()) != "1. Stock" ||
		!bytes.Equal(tl[pdutlv.TagUssdServiceOp].Bytes(), []byte{USSRRequest}) ||
		!bytes.Equal(tl[pdutlv.TagItsSessionInfo].Bytes(), []byte{0x12, 0x35}) {
		t.Errorf("decoded fields %v, TLVs %v", f, tl)
	}
}

func TestRelativeValidity(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{-time.Hour, ""},
		{24 * time.Hour, "000001000000000R"},
		{90 * time.Minute, "000000013000000R"},
		{45 * 24 * time.Hour, "000115000000000R"},
		{400 * 24 * time.Hour, "010105000000000R"},
	}
	for _, tt := range tests {
		if got := string(appendRelativeValidity(nil, tt.d)); got != tt.want {
			t.Errorf("relative validity %v = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestEncodeSubmitAllocs(t *testing.T) {
	cfg := Config{Name: "x", Host: "h", SystemID: "s", SourceAddr: "384"}.withDefaults()
	m := Message{To: "231881234567", Text: "hello", RequestReceipt: true}
	segs, _ := SplitText(m.Text, 0, 0)
	if n := testing.AllocsPerRun(100, func() { encodeSubmit(&cfg, &m, segs[0]) }); n > 1 {
		t.Errorf("encodeSubmit allocates %v times, want 1", n)
	}
}
