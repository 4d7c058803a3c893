package smpp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/mhero-health/mhero"
	"github.com/sony/gobreaker/v2"
)

// Message is one SMS (or USSD reply) to send.
type Message struct {
	ID             string        // the caller's id, for logs only
	To             mhero.MSISDN  // E.164 digits
	From           string        // sender; "" = the MNO's Config.SourceAddr
	Text           string        // UTF-8; split into segments as needed
	Validity       time.Duration // 0 = Config.Validity; negative = none
	RequestReceipt bool          // registered_delivery 1 (final receipt)
	Priority       int           // priority_flag 0-3
	USSD           *USSDOp       // set for a USSD reply over SMPP; the text must fit one segment
	MNO            string        // send through this MNO instead of routing by prefix (USSD replies)
}

// USSDOp is the USSD part of a submit_sm: the ussd_service_op TLV (0x0501) and, when the
// request carried one, the its_session_info TLV (0x1383) echoed back.
type USSDOp struct {
	Op          uint8  // USSRRequest to continue the dialogue, PSSRResponse to end it
	SessionInfo []byte // its_session_info from the USSDRequest, nil when absent
}

// ussd_service_op values (field notes, SMPP 3.4 §5.3.2.44).
const (
	PSSDIndication uint8 = 0
	PSSRIndication uint8 = 1
	USSRRequest    uint8 = 2
	USSNRequest    uint8 = 3
	PSSDResponse   uint8 = 16
	PSSRResponse   uint8 = 17
	USSRConfirm    uint8 = 18
	USSNConfirm    uint8 = 19
)

// SubmitResult says where and how a message went.
type SubmitResult struct {
	MNO      string
	Bind     string // the bind of the last segment
	Segments int    // segments billed
	Coding   Coding
	// MessageIDs are the SMSC's ids, one per segment accepted, normalised with
	// NormalizeMessageID so they compare equal to DLR.Receipt.MessageID. RawMessageIDs
	// are the same ids as the SMSC wrote them.
	MessageIDs    []string
	RawMessageIDs []string
}

// Send routes m to its MNO, splits its text and submits every segment, each on the
// least loaded usable bind of the MNO, waiting (within ctx) for window room, the rate
// and a bind when none is up. It returns when every segment was answered. Errors:
// ErrUnroutable (wrapped), *SubmitError (see IsTemporary and ErrOutcomeUnknown),
// ErrStopped.
func (p *Pool) Send(ctx context.Context, m *Message) (SubmitResult, error) {
	start := time.Now()
	select {
	case <-p.stopping:
		return SubmitResult{}, ErrStopped
	default:
	}
	mn, err := p.mnoFor(m)
	if err != nil {
		return SubmitResult{}, err
	}
	segs, res, err := p.encodeMessage(mn, m)
	if err != nil {
		return res, err
	}
	err = p.submitAll(ctx, mn, m, segs, &res)
	mn.latency.Observe(time.Since(start).Seconds())
	return res, err
}

func (p *Pool) mnoFor(m *Message) (*mno, error) {
	name := m.MNO
	if name == "" {
		var err error
		if name, err = p.router.lookup(m.To); err != nil {
			return nil, err
		}
	}
	mn := p.mnos[name]
	if mn == nil {
		return nil, fmt.Errorf("send via %q: %w", name, ErrUnroutable)
	}
	return mn, nil
}

// encodeMessage splits the text and encodes one submit_sm per segment with go-smpp's
// codec. Sequence numbers are set at send time.
func (p *Pool) encodeMessage(mn *mno, m *Message) ([]segment, SubmitResult, error) {
	res := SubmitResult{MNO: mn.cfg.Name}
	var force Coding
	switch mn.cfg.DataCoding {
	case "latin1":
		force = CodingLatin1
	case "ucs2":
		force = CodingUCS2
	}
	segs, err := SplitText(m.Text, uint8(mn.ref.Add(1)), force)
	if err != nil {
		return nil, res, &SubmitError{Reason: "text: " + err.Error(), Err: err}
	}
	if m.USSD != nil && len(segs) > 1 {
		return nil, res, &SubmitError{Reason: fmt.Sprintf("USSD text needs %d segments, must fit one", len(segs))}
	}
	if m.To == "" {
		return nil, res, &SubmitError{Reason: "no destination"}
	}
	res.Segments, res.Coding = len(segs), segs[0].Coding
	out := make([]segment, len(segs))
	for i, seg := range segs {
		if out[i].frame, err = encodeSubmit(&mn.cfg, m, seg); err != nil {
			return nil, res, &SubmitError{Reason: "encode: " + err.Error(), Err: err}
		}
	}
	return out, res, nil
}

// encodeSubmit builds one submit_sm frame (sequence number 0, set at send time). It
// appends the fields in SMPP 3.4 §4.4.1 order into one exact-size buffer: the hot path's
// single allocation. go-smpp's codec (pdu.NewSubmitSM + SerializeTo) produces the same
// octets with some 70 allocations; TestEncodeSubmitMatchesCodec holds the two equal.
func encodeSubmit(cfg *Config, m *Message, seg Segment) ([]byte, error) {
	from, ton, npi := cfg.SourceAddr, cfg.SourceTON, cfg.SourceNPI
	if m.From != "" && m.From != from {
		from, ton, npi = m.From, 0, 0
		if !allDigits(from) {
			ton = 5
		}
	}
	var esm, reg uint8
	if len(seg.UDH) > 0 {
		esm = 0x40 // UDHI
	}
	if m.RequestReceipt {
		reg = 1
	}
	validity := m.Validity
	if validity == 0 {
		validity = cfg.Validity
	}
	smLen := len(seg.UDH) + len(seg.Payload)
	if smLen > 254 {
		return nil, fmt.Errorf("short_message of %d octets", smLen)
	}
	serviceType := ""
	n := pdu.HeaderLen + 6 + len(from) + len(m.To) + 3 + 12 + 17 + 5 + smLen
	if m.USSD != nil {
		serviceType = "USSD"
		n += len(serviceType) + 5 + 4 + len(m.USSD.SessionInfo)
	}
	b := make([]byte, pdu.HeaderLen, n)
	binary.BigEndian.PutUint32(b[4:], uint32(pdu.SubmitSMID))
	b = append(append(b, serviceType...), 0)
	b = append(b, ton, npi)
	b = append(append(b, from...), 0)
	b = append(b, 1, 1) // destination: international, E.164
	b = append(append(b, m.To...), 0)
	b = append(b, esm, 0, uint8(min(max(m.Priority, 0), 3)))
	b = append(b, 0) // schedule_delivery_time: now
	b = append(appendRelativeValidity(b, validity), 0)
	b = append(b, reg, 0, uint8(seg.Coding), 0, uint8(smLen))
	b = append(append(b, seg.UDH...), seg.Payload...)
	if m.USSD != nil {
		b = appendTLV(b, pdutlv.TagUssdServiceOp, []byte{m.USSD.Op})
		if len(m.USSD.SessionInfo) > 0 {
			b = appendTLV(b, pdutlv.TagItsSessionInfo, m.USSD.SessionInfo)
		}
	}
	binary.BigEndian.PutUint32(b[0:], uint32(len(b)))
	return b, nil
}

func appendTLV(b []byte, tag pdutlv.Tag, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(tag))
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// appendRelativeValidity appends d as an SMPP relative time, "YYMMDDhhmmss000R";
// nothing for d <= 0 (the SMSC's default). Days above 30 go into months of 30 days and
// years of 365, as SMSCs read them.
func appendRelativeValidity(b []byte, d time.Duration) []byte {
	if d <= 0 {
		return b
	}
	s := int64(d / time.Second)
	days := s / 86400
	y, days := min(days/365, 99), days%365
	mo, days := days/30, days%30
	for _, v := range [...]int64{y, mo, days, s % 86400 / 3600, s % 3600 / 60, s % 60} {
		b = append(b, byte('0'+v/10), byte('0'+v%10))
	}
	return append(b, '0', '0', '0', 'R')
}

// segment is one submit_sm of a Send as it moves through attempts.
type segment struct {
	frame   []byte
	b       *bind
	s       *session
	c       *call
	done    func(error) // breaker outcome
	retries int
	ok      bool
	id, raw string
}

// submitAll sends every segment without waiting for earlier answers (they share the
// window with other messages), waits for all answers, and sends again those the status
// table says to retry, after the largest of their delays.
func (p *Pool) submitAll(ctx context.Context, mn *mno, m *Message, segs []segment, res *SubmitResult) error {
	var final error
	for {
		var launchErr error
		for i := range segs {
			if sg := &segs[i]; !sg.ok && launchErr == nil {
				launchErr = p.launch(ctx, mn, sg)
			}
		}
		var delay time.Duration
		retry := false
		for i := range segs {
			sg := &segs[i]
			if sg.c == nil {
				continue
			}
			again, d, err := p.await(ctx, mn, m, sg)
			switch {
			case err != nil && final == nil:
				final = err
			case again:
				retry = true
				delay = max(delay, d)
			}
		}
		if final == nil {
			final = launchErr
		}
		if final != nil || !retry {
			break
		}
		if !sleep(ctx, delay) {
			final = &SubmitError{Temporary: true, Reason: "not sent before the context ended", Err: ctx.Err()}
			break
		}
	}
	ids := make([]string, 2*len(segs)) // one array for both lists
	res.MessageIDs, res.RawMessageIDs = ids[:0:len(segs)], ids[len(segs):len(segs)]
	for _, sg := range segs {
		if sg.ok {
			res.MessageIDs = append(res.MessageIDs, sg.id)
			res.RawMessageIDs = append(res.RawMessageIDs, sg.raw)
			res.Bind = sg.b.name
		}
	}
	return final
}

// launch waits for a bind, a window slot and the rate, and writes the segment. Errors
// are the caller's context ending or the pool stopping: the segment was not sent.
func (p *Pool) launch(ctx context.Context, mn *mno, sg *segment) error {
	for {
		b, s, done, err := p.pick(ctx, mn)
		if err != nil {
			return err
		}
		select {
		case s.window <- struct{}{}:
		case <-s.done:
			done(errExcluded)
			continue
		case <-ctx.Done():
			done(errExcluded)
			return &SubmitError{Temporary: true, Reason: "not sent: window full", Err: ctx.Err()}
		}
		// The rate slot is taken last, right before the write, so no wait between them
		// can bunch PDUs up on the wire.
		if err := mn.limiter.wait(ctx); err != nil {
			<-s.window
			done(errExcluded)
			return &SubmitError{Temporary: true, Reason: "not sent: rate", Err: err}
		}
		c, err := s.start(sg.frame, pdu.SubmitSMRespID, true)
		if err != nil { // errNotSent: the connection went away before the write
			done(errExcluded)
			continue
		}
		b.stats.submits.Add(1)
		b.stats.inflight.Inc()
		sg.b, sg.s, sg.c, sg.done = b, s, c, done
		return nil
	}
}

// pick returns the usable bind with the most window room whose breaker lets a request
// through, waiting for one (bind up, breaker half-open) within ctx.
func (p *Pool) pick(ctx context.Context, mn *mno) (*bind, *session, func(error), error) {
	type cand struct {
		b    *bind
		s    *session
		load int
	}
	for {
		changed := mn.changes()
		var buf [64]cand
		cs := buf[:0]
		n, off := len(mn.binds), int(mn.rr.Add(1))
		for i := range n {
			b := mn.binds[(off+i)%n]
			if s := b.txSession(); s != nil && s.usable() && b.cb.State() != gobreaker.StateOpen {
				cs = append(cs, cand{b, s, s.inFlight()})
			}
		}
		for i := 1; i < len(cs); i++ { // least in flight first; ties keep the rotation
			for j := i; j > 0 && cs[j].load < cs[j-1].load; j-- {
				cs[j], cs[j-1] = cs[j-1], cs[j]
			}
		}
		for _, c := range cs {
			if done, err := c.b.cb.Allow(); err == nil {
				return c.b, c.s, done, nil
			}
		}
		t := time.NewTimer(50 * time.Millisecond) // breaker half-open or timeouts: look again soon
		select {
		case <-changed:
		case <-t.C:
		case <-p.stopping:
			t.Stop()
			return nil, nil, nil, &SubmitError{Temporary: true, Reason: "not sent", Err: ErrStopped}
		case <-ctx.Done():
			t.Stop()
			return nil, nil, nil, &SubmitError{Temporary: true, Reason: "not sent", Err: fmt.Errorf("%w: %w", ErrNoBind, ctx.Err())}
		}
		t.Stop()
	}
}

// await waits for the segment's answer and applies the status table: again reports a
// segment to send again after delay; err is final.
func (p *Pool) await(ctx context.Context, mn *mno, m *Message, sg *segment) (again bool, delay time.Duration, err error) {
	b, c := sg.b, sg.c
	sg.c = nil
	var r result
	select {
	case r = <-c.ch:
		releaseCall(c)
	case <-ctx.Done():
		// Left pending: the reader, the expiry sweep or the close settles it and frees
		// the window slot. A late response is logged with its msg_id.
		sg.done(errExcluded)
		b.stats.inflight.Dec()
		b.stats.unknown.Add(1)
		p.metrics.unknown.WithLabelValues(mn.cfg.Name, b.name).Inc()
		return false, 0, &SubmitError{Reason: "no submit_sm_resp before the context ended",
			Err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, ctx.Err())}
	}
	b.stats.inflight.Dec()
	if r.err != nil { // timeout or connection lost after the write
		if errors.Is(r.err, errBindLost) {
			sg.done(errExcluded) // the loss counts once, in keepBound, not once per submit in flight
		} else {
			sg.done(r.err)
		}
		b.stats.unknown.Add(1)
		p.metrics.unknown.WithLabelValues(mn.cfg.Name, b.name).Inc()
		p.log.Warn("submit outcome unknown", "smsc", mn.cfg.Name, "bind", b.name, "to", m.To, "id", m.ID, "error", r.err)
		return false, 0, &SubmitError{Reason: "no submit_sm_resp", Err: fmt.Errorf("%w: %w", ErrOutcomeUnknown, r.err)}
	}
	sg.done(nil) // the SMSC answered: the bind works, whatever the status
	b.stats.answered(r.status)
	if r.status == StatusOK {
		mn.limiter.ok()
		sg.ok, sg.raw = true, r.msgID
		sg.id = NormalizeMessageID(r.msgID, mn.cfg.MessageIDFormat)
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("submitted", "smsc", mn.cfg.Name, "bind", b.name, "to", m.To, "id", m.ID, "msg_id", r.msgID)
		}
		return false, 0, nil
	}
	rule, ok := mn.cfg.Statuses[StatusCode(r.status)]
	if !ok || rule.Action == ActionFail || rule.Action == "" {
		return false, 0, &SubmitError{Status: r.status, Reason: statusName(r.status)}
	}
	if rule.Action == ActionThrottle {
		b.stats.throttledAt.Store(time.Now().UnixNano())
		mn.limiter.throttled()
	}
	if sg.retries >= rule.MaxRetries {
		return false, 0, &SubmitError{Status: r.status, Temporary: true,
			Reason: statusName(r.status) + " after " + strconv.Itoa(sg.retries) + " retries"}
	}
	sg.retries++
	return true, rule.RetryAfter, nil
}
