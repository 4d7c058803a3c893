package smbody

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// The field lists go-smpp decodes submit_sm and deliver_sm with (pdu.newSubmitSM), and
// the data_sm list of SMPP 3.4 §4.7.1.
var (
	smList = pdufield.List{pdufield.ServiceType, pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr, pdufield.ESMClass, pdufield.ProtocolID,
		pdufield.PriorityFlag, pdufield.ScheduleDeliveryTime, pdufield.ValidityPeriod, pdufield.RegisteredDelivery,
		pdufield.ReplaceIfPresentFlag, pdufield.DataCoding, pdufield.SMDefaultMsgID, pdufield.SMLength, pdufield.ShortMessage}
	dataSMList = pdufield.List{pdufield.ServiceType, pdufield.SourceAddrTON, pdufield.SourceAddrNPI, pdufield.SourceAddr,
		pdufield.DestAddrTON, pdufield.DestAddrNPI, pdufield.DestinationAddr, pdufield.ESMClass,
		pdufield.RegisteredDelivery, pdufield.DataCoding}
)

func tlv(tag uint16, v []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tag)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// receipt is a deliver_sm receipt body with receipted_message_id and message_state.
func receipt() []byte {
	b := []byte("\x00\x01\x01231881234567\x00\x00\x01384\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00")
	text := "id:2684354561 sub:001 dlvrd:001 submit date:2611260301 done date:2611260301 stat:DELIVRD err:000 text:Hello"
	b = append(append(b, byte(len(text))), text...)
	b = append(b, tlv(0x001E, []byte("A0000001\x00"))...)
	return append(b, tlv(0x0427, []byte{2})...)
}

func TestDecode(t *testing.T) {
	var f Fields
	if err := Decode(SM, receipt(), &f); err != nil {
		t.Fatalf("Decode(receipt) = %v", err)
	}
	if string(f.SourceAddr) != "231881234567" || string(f.DestinationAddr) != "384" || f.SourceAddrTON != 1 || f.ESMClass != 4 ||
		!bytes.HasPrefix(f.ShortMessage, []byte("id:2684354561 ")) || !f.HasShortMessage {
		t.Errorf("Decode(receipt) = %+v", f)
	}
	if v, ok := f.TLV(0x001E); !ok || string(v) != "A0000001\x00" {
		t.Errorf("TLV(0x001E) = %q, %v", v, ok)
	}
	if v, ok := f.TLV(0x0427); !ok || !bytes.Equal(v, []byte{2}) {
		t.Errorf("TLV(0x0427) = %q, %v", v, ok)
	}
	if _, ok := f.TLV(0x0501); ok {
		t.Error("TLV(0x0501) found in a body without it")
	}
}

func TestDecodeNoAllocs(t *testing.T) {
	body := receipt()
	var f Fields
	if n := testing.AllocsPerRun(100, func() {
		Decode(SM, body, &f)
		f.TLV(0x0427)
	}); n != 0 {
		t.Errorf("Decode allocates %v times, want 0", n)
	}
}

// FuzzDecode holds Decode equal to go-smpp's List.Decode + DecodeTLV on any body: the
// same error or not, the same fields, the same TLVs (the last of duplicate tags).
func FuzzDecode(f *testing.F) {
	f.Add(false, receipt())                                                                                                                                        // a receipt with TLVs
	f.Add(false, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x40\x00\x00\x00\x00\x00\x00\x00\x08\x08\x05\x00\x03\x01\x02\x01\x00a"))                       // a UCS-2 concatenated part
	f.Add(true, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x00\x04\x24\x00\x02hi"))                                                                       // data_sm with message_payload
	f.Add(false, []byte("USSD\x00\x01\x01231881234567\x00\x00\x00*384#\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05*384#\x05\x01\x00\x01\x01\x05\x01\x00\x01\x02")) // duplicate ussd_service_op
	f.Add(false, []byte("\x00\x01\x01231"))                                                                                                                        // cut inside source_addr
	f.Add(false, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x09short"))                                               // sm_length past the end
	f.Add(false, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x24\x00\x09abc"))                                 // TLV past the end
	f.Add(false, []byte("\x00\x01\x01231881234567\x00\x00\x00384\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x24\x00"))                                        // 3 trailing octets
	f.Fuzz(func(t *testing.T, dataSM bool, body []byte) {
		kind, list := SM, smList
		if dataSM {
			kind, list = DataSM, dataSMList
		}
		var got Fields
		err := Decode(kind, body, &got)
		r := bytes.NewBuffer(bytes.Clone(body))
		want, werr := list.Decode(r)
		var wantTLV pdutlv.Map
		if werr == nil {
			wantTLV, werr = pdutlv.DecodeTLV(r)
		}
		if (err != nil) != (werr != nil) {
			t.Fatalf("Decode error %v, go-smpp %v", err, werr)
		}
		if err != nil {
			return
		}
		str := func(n pdufield.Name) string {
			if v := want[n]; v != nil {
				return v.String()
			}
			return ""
		}
		octet := func(n pdufield.Name) uint8 {
			if v, ok := want[n].(*pdufield.Fixed); ok {
				return v.Data
			}
			return 0
		}
		for _, c := range []struct {
			name      pdufield.Name
			got, want string
		}{
			{pdufield.ServiceType, string(got.ServiceType), str(pdufield.ServiceType)},
			{pdufield.SourceAddr, string(got.SourceAddr), str(pdufield.SourceAddr)},
			{pdufield.DestinationAddr, string(got.DestinationAddr), str(pdufield.DestinationAddr)},
			{pdufield.ScheduleDeliveryTime, string(got.ScheduleDeliveryTime), str(pdufield.ScheduleDeliveryTime)},
			{pdufield.ValidityPeriod, string(got.ValidityPeriod), str(pdufield.ValidityPeriod)},
		} {
			if c.got != c.want {
				t.Errorf("%s = %q, go-smpp %q", c.name, c.got, c.want)
			}
		}
		for _, c := range []struct {
			name      pdufield.Name
			got, want uint8
		}{
			{pdufield.SourceAddrTON, got.SourceAddrTON, octet(pdufield.SourceAddrTON)},
			{pdufield.SourceAddrNPI, got.SourceAddrNPI, octet(pdufield.SourceAddrNPI)},
			{pdufield.DestAddrTON, got.DestAddrTON, octet(pdufield.DestAddrTON)},
			{pdufield.DestAddrNPI, got.DestAddrNPI, octet(pdufield.DestAddrNPI)},
			{pdufield.ESMClass, got.ESMClass, octet(pdufield.ESMClass)},
			{pdufield.ProtocolID, got.ProtocolID, octet(pdufield.ProtocolID)},
			{pdufield.PriorityFlag, got.PriorityFlag, octet(pdufield.PriorityFlag)},
			{pdufield.RegisteredDelivery, got.RegisteredDelivery, octet(pdufield.RegisteredDelivery)},
			{pdufield.ReplaceIfPresentFlag, got.ReplaceIfPresentFlag, octet(pdufield.ReplaceIfPresentFlag)},
			{pdufield.DataCoding, got.DataCoding, octet(pdufield.DataCoding)},
			{pdufield.SMDefaultMsgID, got.SMDefaultMsgID, octet(pdufield.SMDefaultMsgID)},
		} {
			if c.got != c.want {
				t.Errorf("%s = %d, go-smpp %d", c.name, c.got, c.want)
			}
		}
		sm, ok := want[pdufield.ShortMessage].(*pdufield.SM)
		if got.HasShortMessage != ok || (ok && !bytes.Equal(got.ShortMessage, sm.Data)) {
			t.Errorf("short_message = %q (%v), go-smpp %v", got.ShortMessage, got.HasShortMessage, want[pdufield.ShortMessage])
		}
		n := 0
		got.EachTLV(func(tag uint16, _ []byte) {
			if _, ok := wantTLV[pdutlv.Tag(tag)]; !ok {
				t.Errorf("TLV %#04x, not in go-smpp's", tag)
			}
			n++
		})
		for tag, v := range wantTLV {
			if g, ok := got.TLV(uint16(tag)); !ok || !bytes.Equal(g, v.Bytes()) {
				t.Errorf("TLV(%#04x) = %q, %v; go-smpp %q", uint16(tag), g, ok, v.Bytes())
			}
		}
		if n < len(wantTLV) {
			t.Errorf("%d TLVs, go-smpp %d", n, len(wantTLV))
		}
	})
}

// BenchmarkDecode decodes a receipt deliver_sm with Decode and with go-smpp's field list
// and TLV decoder, which it replaces on the hot path.
//
//	go test -run='^$' -bench=BenchmarkDecode ./smpp/internal/smbody
func BenchmarkDecode(b *testing.B) {
	body := receipt()
	b.Run("smbody", func(b *testing.B) {
		b.ReportAllocs()
		var f Fields
		for b.Loop() {
			if Decode(SM, body, &f) != nil {
				b.Fatal("decode")
			}
			f.TLV(0x001E)
		}
	})
	b.Run("fiorix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r := bytes.NewBuffer(body)
			if _, err := smList.Decode(r); err != nil {
				b.Fatal(err)
			}
			t, err := pdutlv.DecodeTLV(r)
			if err != nil {
				b.Fatal(err)
			}
			_ = t[pdutlv.TagReceiptedMessageID]
		}
	})
}
