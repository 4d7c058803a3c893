// Package smbody decodes the mandatory fields and the TLVs of a submit_sm, deliver_sm
// or data_sm body without allocating: the hot path's replacement for go-smpp's
// pdufield.List.Decode and pdutlv.DecodeTLV, which build a map and a heap object per
// field (some 35 allocations a PDU). It reads exactly what go-smpp reads, quirks
// included (a body cut short inside the mandatory fields ends the decoding quietly,
// with no short_message and no TLVs); FuzzDecode holds the two equal on any input.
//
// It is internal to smpp so that both the client (package smpp) and the simulator
// (smpp/smpptest, which must not import smpp) share it.
package smbody

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Fields are the mandatory fields of a body and its optional parameters. Byte slices
// alias the decoded body; C-strings come without their terminating NUL.
type Fields struct {
	ServiceType          []byte
	SourceAddrTON        uint8
	SourceAddrNPI        uint8
	SourceAddr           []byte
	DestAddrTON          uint8
	DestAddrNPI          uint8
	DestinationAddr      []byte
	ESMClass             uint8
	ProtocolID           uint8
	PriorityFlag         uint8
	ScheduleDeliveryTime []byte
	ValidityPeriod       []byte
	RegisteredDelivery   uint8
	ReplaceIfPresentFlag uint8
	DataCoding           uint8
	SMDefaultMsgID       uint8
	ShortMessage         []byte // nil when absent (data_sm, or a body cut short before it)
	HasShortMessage      bool   // short_message was read (it may be empty)

	// TLVs are the optional parameters, raw (tag, length, value...), validated: every
	// value lies within. Read them with TLV.
	TLVs []byte
}

// Errors of Decode, as go-smpp reports the same bodies.
var (
	ErrShortMessage = errors.New("smbody: short read for short_message")
	ErrTLV          = errors.New("smbody: TLV value overruns the body")
)

// Kind is the field list of a body.
type Kind int

// The field lists Decode knows.
const (
	SM     Kind = iota // submit_sm and deliver_sm (SMPP 3.4 §4.4.1, §4.6.1)
	DataSM             // data_sm (§4.7.1): no short_message
)

// reader reads fields as go-smpp's List.Decode does: once a field runs past the end,
// decoding stops quietly and the rest of the body is consumed.
type reader struct {
	b    []byte
	stop bool
}

func (r *reader) cstring() []byte {
	if r.stop {
		return nil
	}
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.b, r.stop = nil, true
		return nil
	}
	v := r.b[:i:i]
	r.b = r.b[i+1:]
	return v
}

func (r *reader) octet() uint8 {
	if r.stop {
		return 0
	}
	if len(r.b) == 0 {
		r.stop = true
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// Decode reads body into f, which it overwrites.
func Decode(kind Kind, body []byte, f *Fields) error {
	*f = Fields{}
	r := reader{b: body}
	f.ServiceType = r.cstring()
	f.SourceAddrTON = r.octet()
	f.SourceAddrNPI = r.octet()
	f.SourceAddr = r.cstring()
	f.DestAddrTON = r.octet()
	f.DestAddrNPI = r.octet()
	f.DestinationAddr = r.cstring()
	f.ESMClass = r.octet()
	if kind == DataSM {
		f.RegisteredDelivery = r.octet()
		f.DataCoding = r.octet()
	} else {
		f.ProtocolID = r.octet()
		f.PriorityFlag = r.octet()
		f.ScheduleDeliveryTime = r.cstring()
		f.ValidityPeriod = r.cstring()
		f.RegisteredDelivery = r.octet()
		f.ReplaceIfPresentFlag = r.octet()
		f.DataCoding = r.octet()
		f.SMDefaultMsgID = r.octet()
		n := int(r.octet())
		if !r.stop {
			if len(r.b) < n {
				return ErrShortMessage
			}
			f.ShortMessage, f.HasShortMessage = r.b[:n:n], true
			r.b = r.b[n:]
		}
	}
	if r.stop {
		return nil
	}
	for t := r.b; len(t) >= 4; {
		n := int(binary.BigEndian.Uint16(t[2:4]))
		if len(t)-4 < n {
			return ErrTLV
		}
		t = t[4+n:]
	}
	f.TLVs = r.b
	return nil
}

// TLV returns the value of the last TLV with tag (go-smpp keeps the last of duplicates)
// and whether there is one.
func (f *Fields) TLV(tag uint16) (v []byte, ok bool) {
	for t := f.TLVs; len(t) >= 4; {
		n := int(binary.BigEndian.Uint16(t[2:4]))
		if binary.BigEndian.Uint16(t[0:2]) == tag {
			v, ok = t[4:4+n:4+n], true
		}
		t = t[4+n:]
	}
	return v, ok
}

// EachTLV calls fn for every TLV in order (duplicates included).
func (f *Fields) EachTLV(fn func(tag uint16, v []byte)) {
	for t := f.TLVs; len(t) >= 4; {
		n := int(binary.BigEndian.Uint16(t[2:4]))
		fn(binary.BigEndian.Uint16(t[0:2]), t[4:4+n:4+n])
		t = t[4+n:]
	}
}
