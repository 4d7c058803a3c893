package smpp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/mhero-health/mhero"
	"github.com/mhero-health/mhero/smpp/internal/smbody"
)

// MO is a mobile-originated SMS, reassembled when it came in parts.
type MO struct {
	MNO      string
	Bind     string
	From     mhero.MSISDN // source_addr without '+'; national when FromTON is not 1
	FromTON  uint8
	To       string // the short code it was sent to
	Text     string
	Coding   Coding
	Parts    int  // 1 for a single SMS
	Partial  bool // some parts never came within Config.MOReassemblyTimeout
	Received time.Time
}

// DLR is a delivery receipt with where it came from. Receipt.MessageID is normalised
// with NormalizeMessageID(id, Config.ReceiptIDFormat), so it equals the matching
// SubmitResult.MessageIDs entry.
type DLR struct {
	Receipt
	MNO          string
	Bind         string
	RawMessageID string       // the id as the SMSC wrote it
	From         mhero.MSISDN // the handset the message went to (the receipt's source_addr)
	To           string       // our sender address
	Received     time.Time
}

// USSDRequest is a USSD PDU from the network (deliver_sm with ussd_service_op).
type USSDRequest struct {
	MNO         string
	Bind        string
	From        mhero.MSISDN
	To          string // service code
	Op          uint8  // ussd_service_op: PSSRIndication, USSRConfirm, ...
	SessionInfo []byte // its_session_info (0x1383) to echo in USSDOp, nil when absent
	Text        string
	Received    time.Time
}

// Handlers receive what the SMSCs send. Each runs on one of Config.InboundWorkers
// goroutines of the connection, and the deliver_sm is answered once it returned: nil →
// OK, error → ESME_RX_T_APPN so the SMSC delivers it again later. A nil handler's PDUs are
// acknowledged and counted.
type Handlers struct {
	MO      MOHandler
	Receipt ReceiptHandler
	USSD    USSDHandler
}

// MOHandler stores an incoming SMS.
type MOHandler interface {
	HandleMO(ctx context.Context, m MO) error
}

// ReceiptHandler records a delivery receipt; it must keep one it cannot match yet
// (receipts may come before Send returned the id).
type ReceiptHandler interface {
	HandleReceipt(ctx context.Context, d DLR) error
}

// USSDHandler takes a USSD request; it answers by Pool.Send with Message.USSD set.
type USSDHandler interface {
	HandleUSSD(ctx context.Context, r USSDRequest) error
}

// MOHandlerFunc, ReceiptHandlerFunc and USSDHandlerFunc adapt functions.
type (
	MOHandlerFunc      func(ctx context.Context, m MO) error
	ReceiptHandlerFunc func(ctx context.Context, d DLR) error
	USSDHandlerFunc    func(ctx context.Context, r USSDRequest) error
)

func (f MOHandlerFunc) HandleMO(ctx context.Context, m MO) error            { return f(ctx, m) }
func (f ReceiptHandlerFunc) HandleReceipt(ctx context.Context, d DLR) error { return f(ctx, d) }
func (f USSDHandlerFunc) HandleUSSD(ctx context.Context, r USSDRequest) error {
	return f(ctx, r)
}

// deliver is a decoded deliver_sm or data_sm.
type deliver struct {
	src, dst string
	srcTON   uint8
	esm, dc  uint8
	sm       []byte
	f        smbody.Fields // its TLVs are read through tlvBytes
}

// decodeInbound decodes the mandatory fields of a deliver_sm (without go-smpp's UDH
// split: ParseUDH does it) or data_sm (which go-smpp's pdu.Decode does not implement),
// and its TLVs, the way go-smpp's pdufield.List.Decode and pdutlv.DecodeTLV do (held
// equal by smbody's FuzzDecode), without their map and heap object per field. d's byte
// slices alias in.body.
func decodeInbound(in *inboundPDU, d *deliver) error {
	kind := smbody.SM
	if in.id == pdu.DataSMID {
		kind = smbody.DataSM
	}
	if err := smbody.Decode(kind, in.body, &d.f); err != nil {
		return err
	}
	f := &d.f
	d.src, d.dst = string(f.SourceAddr), string(f.DestinationAddr)
	d.srcTON, d.esm, d.dc = f.SourceAddrTON, f.ESMClass, f.DataCoding
	d.sm = f.ShortMessage
	if v := d.tlvBytes(pdutlv.TagMessagePayload); len(d.sm) == 0 && v != nil {
		d.sm = v
	}
	return nil
}

func (d *deliver) tlvBytes(tag pdutlv.Tag) []byte {
	v, _ := d.f.TLV(uint16(tag))
	return v
}

func (d *deliver) hasTLV(tag pdutlv.Tag) bool {
	_, ok := d.f.TLV(uint16(tag))
	return ok
}

// inbound handles one deliver_sm/data_sm and returns the command_status to answer.
func (p *Pool) inbound(ctx context.Context, b *bind, in inboundPDU) uint32 {
	var d deliver
	if err := decodeInbound(&in, &d); err != nil {
		p.log.Warn("undecodable PDU from SMSC", "smsc", b.mno.cfg.Name, "bind", b.name, "cmd", in.id.String(), "seq", in.seq, "error", err)
		p.count(b, "invalid", "error")
		return StatusRxPermAppErr
	}
	switch {
	case d.esm&0x3C == 0x04 || d.esm&0x3C == 0x20: // SMSC delivery receipt, intermediate notification
		return p.onReceipt(ctx, b, &d)
	case d.esm&0x3C != 0: // SME acknowledgements: nothing to do
		p.count(b, "sme_ack", "ok")
		return StatusOK
	case d.hasTLV(pdutlv.TagUssdServiceOp):
		return p.onUSSD(ctx, b, &d)
	}
	return p.onMO(ctx, b, &d)
}

func (p *Pool) count(b *bind, kind, result string) {
	b.stats.inbound(kind, result)
}

// answer turns a handler's error into the deliver_sm_resp status.
func (p *Pool) answer(b *bind, kind string, err error) uint32 {
	if err != nil {
		p.count(b, kind, "error")
		p.log.Warn("handler failed; SMSC will deliver again", "smsc", b.mno.cfg.Name, "bind", b.name, "kind", kind, "error", err)
		return StatusRxTempAppErr
	}
	p.count(b, kind, "ok")
	return StatusOK
}

func (p *Pool) onReceipt(ctx context.Context, b *bind, d *deliver) uint32 {
	cfg := &b.mno.cfg
	r, perr := ParseReceiptText(string(d.sm))
	r = ReceiptFromTLVs(r, d.tlvBytes(pdutlv.TagReceiptedMessageID), d.tlvBytes(pdutlv.TagMessageStateOption))
	if r.MessageID == "" {
		p.log.Warn("receipt without message id", "smsc", cfg.Name, "bind", b.name, "error", perr)
		p.count(b, "receipt", "invalid")
		return StatusOK // delivering it again would not make it readable
	}
	dlr := DLR{Receipt: r, MNO: cfg.Name, Bind: b.name, RawMessageID: r.MessageID,
		From: msisdn(d.src), To: d.dst, Received: time.Now()}
	dlr.MessageID = NormalizeMessageID(r.MessageID, cfg.ReceiptIDFormat)
	b.stats.receipt(string(r.State)) // and its Prometheus counter
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("receipt", "smsc", cfg.Name, "bind", b.name, "msg_id", r.MessageID, "status", r.Stat)
	}
	if p.h.Receipt == nil {
		p.count(b, "receipt", "unhandled")
		return StatusOK
	}
	return p.answer(b, "receipt", p.h.Receipt.HandleReceipt(ctx, dlr))
}

func (p *Pool) onUSSD(ctx context.Context, b *bind, d *deliver) uint32 {
	op := d.tlvBytes(pdutlv.TagUssdServiceOp)
	req := USSDRequest{MNO: b.mno.cfg.Name, Bind: b.name, From: msisdn(d.src), To: d.dst,
		SessionInfo: bytes.Clone(d.tlvBytes(pdutlv.TagItsSessionInfo)), Text: decodeMO(Coding(d.dc), d.sm), Received: time.Now()}
	if len(op) > 0 {
		req.Op = op[0]
	}
	if p.h.USSD == nil {
		p.count(b, "ussd", "unhandled")
		return StatusOK
	}
	return p.answer(b, "ussd", p.h.USSD.HandleUSSD(ctx, req))
}

func (p *Pool) onMO(ctx context.Context, b *bind, d *deliver) uint32 {
	mo := MO{MNO: b.mno.cfg.Name, Bind: b.name, From: msisdn(d.src), FromTON: d.srcTON, To: d.dst,
		Coding: Coding(d.dc), Parts: 1, Received: time.Now()}
	body := d.sm
	var concat *ConcatInfo
	if d.esm&0x40 != 0 { // UDHI
		if _, rest, c, err := ParseUDH(d.sm); err == nil {
			body, concat = rest, c
		}
	} else if ref, total, seq := d.tlvBytes(pdutlv.TagSarMsgRefNum), d.tlvBytes(pdutlv.TagSarTotalSegments), d.tlvBytes(pdutlv.TagSarSegmentSeqnum); len(ref) == 2 && len(total) == 1 && len(seq) == 1 {
		if seq[0] >= 1 && seq[0] <= total[0] {
			concat = &ConcatInfo{Ref: binary.BigEndian.Uint16(ref), Total: total[0], Seq: seq[0]}
		}
	}
	if concat == nil || concat.Total <= 1 {
		mo.Text = decodeMO(mo.Coding, body)
		return p.deliverMO(ctx, b, mo, "mo")
	}
	return p.reasm.add(ctx, b, mo, concat, body)
}

func (p *Pool) deliverMO(ctx context.Context, b *bind, mo MO, kind string) uint32 {
	if p.h.MO == nil {
		p.count(b, kind, "unhandled")
		return StatusOK
	}
	return p.answer(b, kind, p.h.MO.HandleMO(ctx, mo))
}

// decodeMO decodes text leniently: an SMS from a person is kept even when its coding is
// odd (GSM octets above 0x7F are read as Latin-1; unknown codings as Latin-1 too).
func decodeMO(c Coding, b []byte) string {
	switch {
	case c&0xF0 == 0xF0: // message class coding group: bit 2 = 8-bit data
		if c&0x04 == 0 {
			c = CodingGSM7
		} else {
			c = CodingLatin1
		}
	case c == 0x04: // 8-bit binary
		c = CodingLatin1
	}
	s, err := DecodeText(c, b)
	if err != nil {
		s, _ = DecodeText(CodingLatin1, b)
	}
	return s
}

func msisdn(addr string) mhero.MSISDN { return mhero.MSISDN(strings.TrimPrefix(addr, "+")) }

// reassembler holds the parts of long MOs until all arrived or their time is up.
type reassembler struct {
	p      *Pool
	mu     sync.Mutex
	groups map[groupKey]*group
	count  map[string]int // groups per MNO
}

type groupKey struct {
	mno, src, dst string
	ref           uint16
	total         uint8
}

type group struct {
	mo         MO
	b          *bind
	parts      [][]byte // by seq-1; nil = missing
	codings    []Coding
	got        int
	deadline   time.Time
	delivering bool
}

func newReassembler(p *Pool) *reassembler {
	return &reassembler{p: p, groups: make(map[groupKey]*group), count: make(map[string]int)}
}

var errBufferFull = errors.New("smpp: MO reassembly buffer full")

// add stores one part. The part completing the text is answered with the handler's
// outcome; the group stays until the handler succeeded, so a part the SMSC delivers
// again after ESME_RX_T_APPN completes it again.
func (r *reassembler) add(ctx context.Context, b *bind, mo MO, c *ConcatInfo, body []byte) uint32 {
	cfg := &b.mno.cfg
	k := groupKey{mno: mo.MNO, src: string(mo.From), dst: mo.To, ref: c.Ref, total: c.Total}
	r.mu.Lock()
	g := r.groups[k]
	if g == nil {
		if r.count[mo.MNO] >= cfg.MOReassemblyMax {
			r.mu.Unlock()
			r.p.count(b, "mo_part", "busy")
			r.p.log.Warn("MO part refused", "smsc", cfg.Name, "error", errBufferFull)
			return StatusRxTempAppErr
		}
		g = &group{mo: mo, b: b, parts: make([][]byte, c.Total), codings: make([]Coding, c.Total), deadline: time.Now().Add(cfg.MOReassemblyTimeout)}
		r.groups[k] = g
		r.count[mo.MNO]++
	}
	i := int(c.Seq) - 1
	if g.parts[i] == nil {
		g.got++
	}
	g.parts[i], g.codings[i] = bytes.Clone(body), mo.Coding
	if g.got < len(g.parts) {
		r.mu.Unlock()
		r.p.count(b, "mo_part", "ok")
		return StatusOK
	}
	if g.delivering { // a duplicate while the handler runs: ask again later
		r.mu.Unlock()
		return StatusRxTempAppErr
	}
	g.delivering = true
	full := g.assemble(false)
	r.mu.Unlock()
	st := r.p.deliverMO(ctx, b, full, "mo")
	r.mu.Lock()
	g.delivering = false
	if st == StatusOK && r.groups[k] == g {
		delete(r.groups, k)
		r.count[mo.MNO]--
	}
	r.mu.Unlock()
	return st
}

// assemble joins the parts present; called with r.mu held.
func (g *group) assemble(partial bool) MO {
	mo := g.mo
	mo.Parts, mo.Partial = len(g.parts), partial
	var sb strings.Builder
	same := true
	for _, c := range g.codings {
		same = same && c == g.codings[0]
	}
	if same { // decode the joined octets: a UCS-2 pair split across parts survives
		var all []byte
		for _, p := range g.parts {
			all = append(all, p...)
		}
		mo.Text, mo.Coding = decodeMO(g.codings[0], all), g.codings[0]
		return mo
	}
	for i, p := range g.parts {
		sb.WriteString(decodeMO(g.codings[i], p))
	}
	mo.Text = sb.String()
	return mo
}

// run expires incomplete texts (handing on what arrived, marked Partial) until ctx
// ends, then hands on everything still held the same way.
func (r *reassembler) run(ctx context.Context) {
	every := time.Second
	for _, mn := range r.p.order {
		every = min(every, max(mn.cfg.MOReassemblyTimeout/4, 10*time.Millisecond))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.expire(time.Time{})
			return
		case now := <-t.C:
			r.expire(now)
		}
	}
}

// expire hands on groups past their deadline (all of them for the zero time).
func (r *reassembler) expire(now time.Time) {
	var due []*group
	r.mu.Lock()
	for k, g := range r.groups {
		if !g.delivering && (now.IsZero() || now.After(g.deadline)) {
			delete(r.groups, k)
			r.count[k.mno]--
			due = append(due, g)
		}
	}
	var mos []MO
	for _, g := range due {
		mos = append(mos, g.assemble(g.got < len(g.parts)))
	}
	r.mu.Unlock()
	for i, mo := range mos {
		if st := r.p.deliverMO(r.p.hctx, due[i].b, mo, "mo_partial"); st != StatusOK {
			r.p.log.Warn("incomplete MO dropped", "smsc", mo.MNO, "parts", mo.Parts, "from", mo.From)
		}
	}
}
