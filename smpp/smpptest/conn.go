package smpptest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
	"github.com/mhero-health/mhero/smpp/internal/smbody"
)

// command_status values the SMSC answers.
const (
	statusOK         = 0x00
	statusInvCmdLen  = 0x02
	statusInvCmdID   = 0x03
	statusInvBndSts  = 0x04
	statusAlyBnd     = 0x05
	statusBindFail   = 0x0D
	statusInvPaswd   = 0x0E
	statusInvSysID   = 0x0F
	statusMsgQFul    = 0x14
	statusThrottled  = 0x58
	maxPDU           = 64 << 10 // larger than go-smpp's 4096 so a client's oversized PDU gets a nack, not a hang
	outQueue         = 4096
	smscSystemID     = "smpptest"
	bindTX, bindRX   = 1, 2
	respBit          = 0x80000000
	errConnClosedMsg = "smpptest: connection closed"
)

var errConnClosed = errors.New(errConnClosedMsg)

// frame is one PDU for the writer: a response written from its header fields and an
// optional C-string body, or a deliver_sm.
type frame struct {
	id         pdu.ID
	status     pdu.Status
	seq        uint32
	body       string // C-string body (system_id, message_id) when hasBody
	hasBody    bool
	dsm        *deliverSM
	submitResp bool            // a submit_sm_resp: one fewer in flight once written
	receipt    *pendingReceipt // ReceiptBeforeResp: route this receipt just before the response
	closeAfter bool            // unbind_resp: flush and close
}

func (f *frame) appendTo(b []byte) []byte {
	if f.dsm != nil {
		return f.dsm.appendTo(b, f.seq)
	}
	n := pdu.HeaderLen
	if f.hasBody {
		n += len(f.body) + 1
	}
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint32(b, uint32(f.id))
	b = binary.BigEndian.AppendUint32(b, uint32(f.status))
	b = binary.BigEndian.AppendUint32(b, f.seq)
	if f.hasBody {
		b = append(append(b, f.body...), 0)
	}
	return b
}

// conn is one client connection: a reader goroutine that handles PDUs in order, a writer
// goroutine that batches frames into one flush while more are queued, and, with a
// response delay, one goroutine that releases responses when due.
type conn struct {
	s        *Server
	nc       net.Conn
	out      chan frame
	done     chan struct{}
	once     sync.Once
	mode     atomic.Uint32 // bindTX|bindRX once bound
	systemID string        // set at bind, under s.mu
	seq      atomic.Uint32 // the SMSC's own sequence numbers, from 1
	inflight atomic.Int64  // submit_sm read and not yet answered
	delayed  *delayQueue[frame]

	mu      sync.Mutex
	closed  bool
	pending map[uint32]*pendingDeliver // deliver_sm awaiting deliver_sm_resp

	// reader-only state
	received int
	rd       *bufio.Reader
	hdr      [pdu.HeaderLen]byte
	buf      []byte
	br       bytes.Reader
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s:       s,
		nc:      nc,
		out:     make(chan frame, outQueue),
		done:    make(chan struct{}),
		pending: map[uint32]*pendingDeliver{},
		rd:      bufio.NewReaderSize(nc, 64<<10),
	}
	if s.respDelay() > 0 {
		c.delayed = newDelayQueue(c.releaseDelayed)
	}
	return c
}

func (s *Server) respDelay() time.Duration {
	d := s.cfg.Latency
	if s.cfg.ReceiptBeforeResp && s.cfg.Receipts && s.cfg.ReceiptDelay > d {
		d = s.cfg.ReceiptDelay
	}
	return d
}

func (c *conn) start() {
	n := 2
	if c.delayed != nil {
		n++
	}
	c.s.wg.Add(n)
	go c.readLoop()
	go c.writeLoop()
	if c.delayed != nil {
		go func() { defer c.s.wg.Done(); c.delayed.run(c.done) }()
	}
}

// close ends the connection once: the reader and writer stop, waiters of its deliver_sm
// hear errConnClosed, and receipts it had not had acknowledged wait for the next receiver.
func (c *conn) close() {
	c.once.Do(func() {
		close(c.done)
		c.nc.Close()
		c.mu.Lock()
		c.closed = true
		pending := c.pending
		c.pending = nil
		c.mu.Unlock()
		for _, p := range pending {
			if p.done != nil {
				p.done <- errConnClosed
			}
			if p.receipt {
				c.s.queueReceipt(c.systemID, p.dsm)
			}
		}
	})
}

// send queues f for the writer; false when the connection is closed.
func (c *conn) send(f frame) bool {
	select {
	case c.out <- f:
		return true
	case <-c.done:
		return false
	}
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	w := bufio.NewWriterSize(c.nc, 64<<10)
	var scratch []byte
	for {
		var f frame
		select {
		case f = <-c.out:
		case <-c.done:
			return
		}
		scratch = f.appendTo(scratch[:0])
		_, err := w.Write(scratch)
		if f.submitResp {
			c.inflight.Add(-1)
		}
		if err == nil && !f.closeAfter && len(c.out) == 0 {
			runtime.Gosched() // let frames made ready together (a batch's responses, due receipts) join this flush
		}
		if err == nil && (f.closeAfter || len(c.out) == 0) {
			err = w.Flush()
		}
		if err != nil || f.closeAfter {
			c.close()
			return
		}
	}
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.s.removeConn(c)
	defer c.close()
	for {
		id, seq, raw, err := c.readFrame()
		if err != nil {
			if errors.Is(err, errFrameLen) { // cannot resynchronise: nack, flush, close
				c.s.st.nacks.Add(1)
				if c.send(frame{id: pdu.GenericNACKID, status: statusInvCmdLen, seq: seq, closeAfter: true}) {
					<-c.done
				}
			}
			if c.s.debug && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.log.Debug("smsc read", "system_id", c.systemID, "error", err)
			}
			return
		}
		c.received++
		if n := c.s.cfg.DropEvery; n > 0 && c.received%n == 0 {
			c.s.st.drops.Add(1)
			c.s.log.Info("smsc dropping connection", "system_id", c.systemID, "pdus", c.received)
			return
		}
		if c.s.debug {
			c.s.log.Debug("smsc pdu", "system_id", c.systemID, "cmd", id.String(), "seq", seq)
		}
		c.handle(id, seq, raw)
	}
}

var errFrameLen = errors.New("smpptest: bad command_length")

// readFrame reads one whole PDU. The returned frame is only valid until the next call.
func (c *conn) readFrame() (id pdu.ID, seq uint32, frame []byte, err error) {
	if _, err := io.ReadFull(c.rd, c.hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	n := binary.BigEndian.Uint32(c.hdr[0:4])
	id = pdu.ID(binary.BigEndian.Uint32(c.hdr[4:8]))
	seq = binary.BigEndian.Uint32(c.hdr[12:16])
	if n < pdu.HeaderLen || n > maxPDU {
		return id, seq, nil, errFrameLen
	}
	if cap(c.buf) < int(n) {
		c.buf = make([]byte, n)
	}
	frame = c.buf[:n]
	copy(frame, c.hdr[:])
	if _, err := io.ReadFull(c.rd, frame[pdu.HeaderLen:]); err != nil {
		return id, seq, nil, err
	}
	return id, seq, frame, nil
}

// decode runs go-smpp's decoder over a whole frame; the body it returns owns its bytes.
func (c *conn) decode(frame []byte) (pdu.Body, error) {
	return decodeFrame(&c.br, frame)
}

// decodeFrame decodes one frame, turning a panic in the codec into an error: a PDU from
// the network must never bring the SMSC down.
func decodeFrame(br *bytes.Reader, frame []byte) (p pdu.Body, err error) {
	if len(frame) > pdu.MaxSize {
		return nil, errFrameLen
	}
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("smpptest: decode: %v", r)
		}
	}()
	br.Reset(frame)
	return pdu.Decode(br)
}

func (c *conn) handle(id pdu.ID, seq uint32, raw []byte) {
	switch id {
	case pdu.BindTransmitterID, pdu.BindReceiverID, pdu.BindTransceiverID:
		c.handleBind(id, seq, raw)
	case pdu.SubmitSMID:
		c.handleSubmit(seq, raw)
	case pdu.DeliverSMRespID:
		c.handleDeliverResp(seq, pdu.Status(binary.BigEndian.Uint32(raw[8:12])))
	case pdu.EnquireLinkID:
		c.s.st.enquireLinks.Add(1)
		c.send(frame{id: pdu.EnquireLinkRespID, seq: seq})
	case pdu.UnbindID:
		c.s.log.Info("smsc unbind", "system_id", c.systemID)
		c.send(frame{id: pdu.UnbindRespID, seq: seq, closeAfter: true})
	case pdu.EnquireLinkRespID, pdu.UnbindRespID, pdu.GenericNACKID:
	default:
		if uint32(id)&respBit == 0 { // a request we do not implement; responses we did not ask for are ignored
			c.nack(seq, statusInvCmdID)
		}
	}
}

func (c *conn) nack(seq uint32, status pdu.Status) {
	c.s.st.nacks.Add(1)
	c.send(frame{id: pdu.GenericNACKID, status: status, seq: seq})
}

func (c *conn) handleBind(id pdu.ID, seq uint32, raw []byte) {
	resp := frame{id: id | respBit, seq: seq}
	p, err := c.decode(raw)
	if err != nil {
		c.nack(seq, statusInvCmdLen)
		return
	}
	f := p.Fields()
	sysID, pass := field(f, pdufield.SystemID), field(f, pdufield.Password)
	cfg := c.s.cfg
	switch {
	case c.mode.Load() != 0:
		resp.status = statusAlyBnd
	case cfg.RejectBinds:
		resp.status = statusBindFail
	case cfg.SystemID != "" && sysID != cfg.SystemID:
		resp.status = statusInvSysID
	case cfg.Password != "" && pass != cfg.Password:
		resp.status = statusInvPaswd
	}
	if resp.status != statusOK {
		c.s.st.bindsRejected.Add(1)
		c.s.log.Info("smsc bind rejected", "system_id", sysID, "status", uint32(resp.status))
		c.send(resp)
		return
	}
	mode := uint32(bindTX)
	switch id {
	case pdu.BindReceiverID:
		mode = bindRX
	case pdu.BindTransceiverID:
		mode = bindTX | bindRX
	}
	c.s.mu.Lock()
	c.systemID = sysID
	c.mode.Store(mode)
	c.s.mu.Unlock()
	c.s.st.binds.Add(1)
	c.s.log.Info("smsc bind", "system_id", sysID, "cmd", id.String())
	resp.body, resp.hasBody = smscSystemID, true
	c.send(resp)
	if mode&bindRX != 0 {
		c.s.flushQueued(c)
	}
}

func field(f pdufield.Map, name pdufield.Name) string {
	if v, ok := f[name]; ok && v != nil {
		return v.String()
	}
	return ""
}

func (c *conn) handleSubmit(seq uint32, raw []byte) {
	st := &c.s.st
	st.submits.Add(1)
	resp := frame{id: pdu.SubmitSMRespID, seq: seq, submitResp: true}
	if c.mode.Load()&bindTX == 0 {
		resp.status = statusInvBndSts
		st.failed.Add(1)
		c.respond(resp, nil)
		return
	}
	var f smbody.Fields
	if err := decodeSubmit(raw, &f); err != nil || !f.HasShortMessage { // go-smpp stops quietly at a truncated body
		c.nack(seq, statusInvCmdLen)
		return
	}
	sm := c.submitOf(seq, &f)
	cfg := &c.s.cfg
	if cfg.NoResponseFor != nil && cfg.NoResponseFor(sm) {
		st.unanswered.Add(1)
		return
	}
	if cfg.MaxWindow > 0 && c.inflight.Load() >= int64(cfg.MaxWindow) {
		st.queueFull.Add(1)
		c.send(frame{id: pdu.SubmitSMRespID, seq: seq, status: statusMsgQFul})
		return
	}
	switch {
	case !c.s.throttle.allow(sm.ReceivedAt):
		resp.status = statusThrottled
		st.throttled.Add(1)
	case cfg.SubmitStatus != nil:
		resp.status = pdu.Status(cfg.SubmitStatus(sm))
		if resp.status != statusOK {
			st.failed.Add(1)
		}
	}
	if resp.status != statusOK {
		c.respond(resp, nil)
		return
	}
	n := c.s.newMessageID()
	sm.MessageID = formatID(n, cfg.MessageIDFormat)
	st.accepted.Add(1)
	c.s.record(sm)
	resp.body, resp.hasBody = sm.MessageID, true
	c.respond(resp, c.s.newReceipt(c, &sm, n))
}

// respond answers a submit_sm now or after the response delay, with its receipt (if any)
// sent before or after it as configured.
func (c *conn) respond(resp frame, rc *pendingReceipt) {
	n := c.inflight.Add(1)
	for m := c.s.st.maxInFlight.Load(); n > m && !c.s.st.maxInFlight.CompareAndSwap(m, n); m = c.s.st.maxInFlight.Load() {
	}
	before := rc != nil && c.s.cfg.ReceiptBeforeResp
	if rc != nil && !before && c.s.cfg.ReceiptDelay > 0 {
		c.s.receipts.push(time.Now().Add(c.s.cfg.ReceiptDelay), rc)
		rc = nil
	}
	if c.delayed != nil {
		if before {
			resp.receipt = rc
		}
		c.delayed.push(time.Now().Add(c.s.respDelay()), resp)
		if !before && rc != nil {
			c.s.sendReceipt(rc)
		}
		return
	}
	if before {
		c.s.sendReceipt(rc)
	}
	c.send(resp)
	if !before && rc != nil {
		c.s.sendReceipt(rc)
	}
}

func (c *conn) releaseDelayed(f frame) {
	if f.receipt != nil {
		c.s.sendReceipt(f.receipt)
		f.receipt = nil
	}
	if !c.send(f) && f.submitResp {
		c.inflight.Add(-1)
	}
}

// decodeSubmit decodes a submit_sm frame the way go-smpp's pdu.Decode does (smbody's
// FuzzDecode holds the two equal), without its map and object per field. f's slices
// alias a copy of the frame's body, so the Submit made of them owns its bytes.
func decodeSubmit(frame []byte, f *smbody.Fields) error {
	if len(frame) > pdu.MaxSize {
		return errFrameLen
	}
	return smbody.Decode(smbody.SM, bytes.Clone(frame[pdu.HeaderLen:]), f)
}

// submitOf copies what the tests look at out of a decoded submit_sm.
func (c *conn) submitOf(seq uint32, f *smbody.Fields) Submit {
	sm := Submit{
		SystemID:           c.systemID,
		Seq:                seq,
		ServiceType:        string(f.ServiceType),
		Src:                string(f.SourceAddr),
		Dst:                string(f.DestinationAddr),
		ESMClass:           f.ESMClass,
		DataCoding:         f.DataCoding,
		RegisteredDelivery: f.RegisteredDelivery,
		ValidityPeriod:     string(f.ValidityPeriod),
		ShortMessage:       f.ShortMessage,
		ReceivedAt:         time.Now(),
	}
	if sm.ESMClass&0x40 != 0 {
		sm.UDH, sm.Concat = parseUDH(sm.ShortMessage)
	}
	if len(f.TLVs) >= 4 {
		sm.TLVs = make(map[pdutlv.Tag][]byte)
		f.EachTLV(func(tag uint16, v []byte) { sm.TLVs[pdutlv.Tag(tag)] = v }) // the last of duplicates wins, as in go-smpp
	}
	return sm
}

// parseUDH returns the user data header of a UDHI short_message and its concatenation
// element, if valid; a malformed header yields nil, nil.
func parseUDH(sm []byte) (udh []byte, part *Part) {
	if len(sm) == 0 || int(sm[0])+1 > len(sm) {
		return nil, nil
	}
	udh = sm[:int(sm[0])+1]
	for ie := udh[1:]; len(ie) >= 2 && int(ie[1])+2 <= len(ie); ie = ie[2+int(ie[1]):] {
		d := ie[2 : 2+int(ie[1])]
		var p Part
		switch {
		case ie[0] == 0x00 && len(d) == 3:
			p = Part{Ref: uint16(d[0]), Total: d[1], Seq: d[2]}
		case ie[0] == 0x08 && len(d) == 4:
			p = Part{Ref: binary.BigEndian.Uint16(d), Total: d[2], Seq: d[3]}
		default:
			continue
		}
		if part == nil && p.Seq != 0 && p.Seq <= p.Total {
			part = &p
		}
	}
	return udh, part
}

func (c *conn) handleDeliverResp(seq uint32, status pdu.Status) {
	c.mu.Lock()
	p := c.pending[seq]
	delete(c.pending, seq)
	c.mu.Unlock()
	if p == nil {
		return // late answer to a deliver_sm already resent or given up
	}
	c.s.st.deliverAcked.Add(1)
	if p.done != nil {
		var err error
		if status != statusOK {
			err = status
		}
		p.done <- err
	}
}
