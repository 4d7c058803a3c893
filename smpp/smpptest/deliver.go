package smpptest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fiorix/go-smpp/smpp/encoding"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutext"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// ErrNoReceiver is returned by DeliverMO and DeliverUSSD when no receiver or transceiver
// is bound.
var ErrNoReceiver = errors.New("smpptest: no receiver bound")

// deliverSM is a deliver_sm body; immutable once built (resends only change the sequence
// number, which travels in the frame).
type deliverSM struct {
	serviceType string
	src, dst    string
	esm, dc     byte
	sm          []byte
	tlvs        []pdutlv.Field
}

// appendTo encodes the deliver_sm with sequence number seq (SMPP 3.4 §4.6.1).
func (d *deliverSM) appendTo(b []byte, seq uint32) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // command_length, set below
	b = binary.BigEndian.AppendUint32(b, 0x00000005)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = append(append(b, d.serviceType...), 0)
	ton, npi := addrType(d.src)
	b = append(append(append(b, ton, npi), d.src...), 0)
	ton, npi = addrType(d.dst)
	b = append(append(append(b, ton, npi), d.dst...), 0)
	// esm_class, protocol_id, priority_flag, schedule_delivery_time, validity_period,
	// registered_delivery, replace_if_present_flag, data_coding, sm_default_msg_id
	b = append(b, d.esm, 0, 0, 0, 0, 0, 0, d.dc, 0, byte(len(d.sm)))
	b = append(b, d.sm...)
	for _, t := range d.tlvs {
		b = binary.BigEndian.AppendUint16(b, uint16(t.Tag))
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Data)))
		b = append(b, t.Data...)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// addrType picks TON/NPI: international E.164 for long numbers, unknown for short codes,
// alphanumeric for anything else.
func addrType(a string) (ton, npi byte) {
	for i := 0; i < len(a); i++ {
		if a[i] < '0' || a[i] > '9' {
			return 5, 0
		}
	}
	if len(a) >= 8 {
		return 1, 1
	}
	return 0, 1
}

type pendingDeliver struct {
	dsm     *deliverSM
	sentAt  time.Time
	resent  bool
	receipt bool       // a receipt: requeued if its connection closes unacknowledged
	done    chan error // MO/USSD waiter, buffered; nil for receipts
}

// deliver writes a deliver_sm with the connection's next sequence number and tracks it
// until its deliver_sm_resp.
func (c *conn) deliver(d *deliverSM, receipt bool, done chan error) error {
	seq := c.seq.Add(1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errConnClosed
	}
	c.pending[seq] = &pendingDeliver{dsm: d, sentAt: time.Now(), receipt: receipt, done: done}
	c.mu.Unlock()
	if !c.send(frame{seq: seq, dsm: d}) {
		return errConnClosed
	}
	return nil
}

// janitor resends each deliver_sm not acknowledged within DeliverTimeout once, with a new
// sequence number, and gives up on it after a second timeout.
func (s *Server) janitor() {
	defer s.wg.Done()
	every := max(s.cfg.DeliverTimeout/4, 5*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			conns := make([]*conn, 0, len(s.conns))
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				c.expire(now, s.cfg.DeliverTimeout)
			}
		}
	}
}

func (c *conn) expire(now time.Time, timeout time.Duration) {
	type resend struct {
		seq uint32
		d   *deliverSM
	}
	var resends []resend
	var failed []*pendingDeliver
	c.mu.Lock()
	for seq, p := range c.pending {
		if now.Sub(p.sentAt) < timeout {
			continue
		}
		delete(c.pending, seq)
		if p.resent {
			failed = append(failed, p)
			continue
		}
		p.resent, p.sentAt = true, now
		n := c.seq.Add(1)
		c.pending[n] = p
		resends = append(resends, resend{n, p.dsm})
	}
	c.mu.Unlock()
	for _, r := range resends {
		c.s.st.deliverResent.Add(1)
		c.send(frame{seq: r.seq, dsm: r.d})
	}
	for _, p := range failed {
		c.s.st.deliverFailed.Add(1)
		if p.done != nil {
			p.done <- fmt.Errorf("smpptest: no deliver_sm_resp after a resend")
		}
	}
	if len(resends)+len(failed) > 0 {
		c.s.log.Warn("smsc deliver_sm unacknowledged", "system_id", c.systemID, "resent", len(resends), "failed", len(failed))
	}
}

// pendingReceipt is a receipt built at submit time, routed when it is due.
type pendingReceipt struct {
	origin   *conn
	systemID string
	dsm      *deliverSM
}

// stat words and their message_state (SMPP 3.4 §5.2.28).
var messageStates = map[string]byte{
	"ENROUTE": 1, "DELIVRD": 2, "EXPIRED": 3, "DELETED": 4, "UNDELIV": 5, "ACCEPTD": 6, "UNKNOWN": 7, "REJECTD": 8,
}

// newReceipt builds the receipt for an accepted submit, or nil when none is due:
// registered_delivery 1 asks for every final outcome, 2 for failures only.
func (s *Server) newReceipt(c *conn, sm *Submit, n uint64) *pendingReceipt {
	if !s.cfg.Receipts {
		return nil
	}
	stat := s.stats.pick(n)
	switch sm.RegisteredDelivery & 0x03 {
	case 1:
	case 2:
		if stat == "DELIVRD" {
			return nil
		}
	default:
		return nil
	}
	id := formatID(n, s.cfg.ReceiptIDFormat)
	d := &deliverSM{src: sm.Dst, dst: sm.Src, esm: 0x04, sm: receiptText(id, stat, sm, time.Now())}
	if s.cfg.ReceiptTLVs {
		state, ok := messageStates[stat]
		if !ok {
			state = 7
		}
		d.tlvs = []pdutlv.Field{
			{Tag: pdutlv.TagReceiptedMessageID, Data: append([]byte(id), 0)},
			{Tag: pdutlv.TagMessageStateOption, Data: []byte{state}},
		}
	}
	return &pendingReceipt{origin: c, systemID: c.systemID, dsm: d}
}

// receiptText writes the SMPP 3.4 appendix B receipt. text: is the first 20 octets of the
// message body, non-printable octets as '.'.
func receiptText(id, stat string, sm *Submit, done time.Time) []byte {
	b := make([]byte, 0, 120+len(id))
	b = append(append(b, "id:"...), id...)
	b = append(b, " sub:001 dlvrd:"...)
	if stat == "DELIVRD" {
		b = append(b, "001"...)
	} else {
		b = append(b, "000"...)
	}
	b = sm.ReceivedAt.UTC().AppendFormat(append(b, " submit date:"...), "0601021504")
	b = done.UTC().AppendFormat(append(b, " done date:"...), "0601021504")
	b = append(append(b, " stat:"...), stat...)
	switch stat {
	case "DELIVRD", "ACCEPTD", "ENROUTE":
		b = append(b, " err:000 text:"...)
	default:
		b = append(b, " err:001 text:"...)
	}
	body := sm.ShortMessage[len(sm.UDH):]
	for i := 0; i < len(body) && i < 20; i++ {
		if c := body[i]; c >= 0x20 && c < 0x7F {
			b = append(b, c)
		} else {
			b = append(b, '.')
		}
	}
	return b
}

// sendReceipt writes a receipt on the bind that submitted it if that bind receives,
// else on a receiver bind of the same system_id, else keeps it until one binds.
func (s *Server) sendReceipt(p *pendingReceipt) {
	target := p.origin
	if target.mode.Load()&bindRX == 0 || isDone(target.done) {
		target = s.pickReceiver(p.systemID)
	}
	if target == nil || target.deliver(p.dsm, true, nil) != nil {
		s.queueReceipt(p.systemID, p.dsm)
		return
	}
	s.st.receiptsSent.Add(1)
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// pickReceiver returns a live receiver or transceiver bind, of systemID unless it is "",
// taking turns between several.
func (s *Server) pickReceiver(systemID string) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cands []*conn
	for c := range s.conns {
		if c.mode.Load()&bindRX != 0 && !isDone(c.done) && (systemID == "" || c.systemID == systemID) {
			cands = append(cands, c)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	s.rrDeliver++
	return cands[s.rrDeliver%len(cands)]
}

func (s *Server) queueReceipt(systemID string, d *deliverSM) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.nqueued >= maxQueuedReceipts {
		return
	}
	s.queued[systemID] = append(s.queued[systemID], d)
	s.nqueued++
}

// flushQueued sends a newly bound receiver the receipts waiting for its system_id.
func (s *Server) flushQueued(c *conn) {
	s.mu.Lock()
	q := s.queued[c.systemID]
	delete(s.queued, c.systemID)
	s.nqueued -= len(q)
	s.mu.Unlock()
	for i, d := range q {
		if c.deliver(d, true, nil) != nil {
			for _, rest := range q[i:] {
				s.queueReceipt(c.systemID, rest)
			}
			return
		}
		s.st.receiptsSent.Add(1)
	}
}

// DeliverMO sends an MO SMS from src to dst to one bound receiver or transceiver (taking
// turns when several are bound), in GSM 7-bit when the text fits the default alphabet and
// UCS-2 otherwise, split into concatenated parts with an 8-bit reference UDH when long.
// It returns when every part has its deliver_sm_resp (the resp's error status, if any),
// or when ctx is done.
func (s *Server) DeliverMO(ctx context.Context, src, dst, text string) error {
	dc, parts := splitMO(text, byte(s.nextRef.Add(1)))
	c := s.pickReceiver("")
	if c == nil {
		return ErrNoReceiver
	}
	done := make(chan error, len(parts))
	for _, sm := range parts {
		d := &deliverSM{src: src, dst: dst, dc: dc, sm: sm}
		if len(parts) > 1 {
			d.esm = 0x40
		}
		if err := c.deliver(d, false, done); err != nil {
			return err
		}
		s.st.moSent.Add(1)
	}
	return wait(ctx, done, len(parts))
}

// DeliverUSSD sends a USSD deliver_sm (service_type "USSD") carrying ussd_service_op op
// (1 = PSSR indication, 18 = USSR confirm, ...) and, when not nil, its_session_info, and
// waits for its deliver_sm_resp. The text must fit one short_message (255 octets).
func (s *Server) DeliverUSSD(ctx context.Context, src, dst, text string, op byte, sessionInfo []byte) error {
	dc, enc := encodeText(text)
	if len(enc) > 255 {
		return fmt.Errorf("smpptest: USSD text of %d octets does not fit one deliver_sm", len(enc))
	}
	d := &deliverSM{serviceType: "USSD", src: src, dst: dst, dc: dc, sm: enc,
		tlvs: []pdutlv.Field{{Tag: pdutlv.TagUssdServiceOp, Data: []byte{op}}}}
	if sessionInfo != nil {
		d.tlvs = append(d.tlvs, pdutlv.Field{Tag: pdutlv.TagItsSessionInfo, Data: sessionInfo})
	}
	c := s.pickReceiver("")
	if c == nil {
		return ErrNoReceiver
	}
	done := make(chan error, 1)
	if err := c.deliver(d, false, done); err != nil {
		return err
	}
	s.st.moSent.Add(1)
	return wait(ctx, done, 1)
}

func wait(ctx context.Context, done chan error, n int) error {
	for range n {
		select {
		case err := <-done:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// encodeText encodes text as GSM 7-bit (unpacked) when it fits the default alphabet, else
// as UTF-16BE, with go-smpp's text codecs.
func encodeText(text string) (dc byte, enc []byte) {
	if len(encoding.ValidateGSM7String(text)) == 0 {
		return byte(pdutext.DefaultType), pdutext.GSM7(text).Encode()
	}
	return byte(pdutext.UCS2Type), pdutext.UCS2(text).Encode()
}

// splitMO encodes text and splits it like a handset: 160/153 septets or 140/134 octets of
// UCS-2, never cutting an escape pair or a surrogate pair, UDH 05 00 03 ref total seq.
func splitMO(text string, ref byte) (dc byte, parts [][]byte) {
	dc, b := encodeText(text)
	single, multi := 160, 153
	if dc == byte(pdutext.UCS2Type) {
		single, multi = 140, 134
	}
	if len(b) <= single {
		return dc, [][]byte{b}
	}
	var bodies [][]byte
	for len(b) > 0 {
		n := 0
		for n < len(b) {
			unit := 1
			switch {
			case dc != byte(pdutext.UCS2Type) && b[n] == 0x1B:
				unit = 2
			case dc == byte(pdutext.UCS2Type) && b[n] >= 0xD8 && b[n] <= 0xDB:
				unit = 4
			case dc == byte(pdutext.UCS2Type):
				unit = 2
			}
			if n+unit > multi {
				break
			}
			n += unit
		}
		n = min(max(n, 1), len(b))
		bodies = append(bodies, b[:n])
		b = b[n:]
	}
	total := min(len(bodies), 255)
	for i, body := range bodies[:total] {
		sm := append([]byte{0x05, 0x00, 0x03, ref, byte(total), byte(i + 1)}, body...)
		parts = append(parts, sm)
	}
	return dc, parts
}

// statPicker draws stat words by weight, deterministically from the message number.
type statPicker struct {
	words []string
	cum   []float64
}

func newStatPicker(weights map[string]float64) statPicker {
	var p statPicker
	var sum float64
	words := make([]string, 0, len(weights))
	for w, v := range weights {
		if v > 0 && !math.IsInf(v, 0) {
			words = append(words, w)
		}
	}
	sort.Strings(words)
	for _, w := range words {
		sum += weights[w]
		p.words = append(p.words, w)
		p.cum = append(p.cum, sum)
	}
	for i := range p.cum {
		p.cum[i] /= sum
	}
	return p
}

func (p statPicker) pick(n uint64) string {
	if len(p.words) == 0 {
		return "DELIVRD"
	}
	// splitmix64 of the message number, as a fraction in [0, 1)
	z := n + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	u := float64(z>>11) / (1 << 53)
	for i, c := range p.cum {
		if u < c {
			return p.words[i]
		}
	}
	return p.words[len(p.words)-1]
}

// ParseReceiptMix reads "DELIVRD=0.9,UNDELIV=0.1" into ReceiptStates weights.
func ParseReceiptMix(s string) (map[string]float64, error) {
	m := map[string]float64{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("smpptest: receipt mix %q: want STAT=weight", kv)
		}
		w, err := strconv.ParseFloat(v, 64)
		if err != nil || w < 0 || math.IsInf(w, 0) || math.IsNaN(w) {
			return nil, fmt.Errorf("smpptest: receipt mix %q: bad weight", kv)
		}
		m[k] = w
	}
	return m, nil
}
