package smpp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/fiorix/go-smpp/smpp/pdu/pdufield"
)

// A session is one SMPP connection, bound: our replacement for go-smpp's
// Transmitter/Transceiver/Receiver, on its PDU codec. It owns
//
//   - one reader goroutine that sorts every incoming PDU: a response (command id with the
//     high bit set) goes to the pending request with the same command id AND sequence
//     number, and never anywhere else; an SMSC-originated request (deliver_sm, data_sm,
//     enquire_link, unbind) is handled apart, so a deliver_sm numbered like one of our
//     submit_sm in flight is never mistaken for its response;
//   - a serialised writer: a buffered writer behind a mutex, flushed by the last writer in
//     line (group commit) after one runtime.Gosched, so a full window, or the responses
//     of handlers released together, go out in few syscalls, and a lone PDU waits no
//     longer than the goroutines already runnable;
//   - the window: at most cfg.Window submit_sm in flight; a slot is taken before the write
//     and given back when the response, a timeout or the end of the connection settles it;
//   - a keeper goroutine that expires requests past cfg.ResponseTimeout (one sweep, no
//     timer per PDU) and sends enquire_link every cfg.EnquireLink; an unanswered
//     enquire_link closes the connection (dead link);
//   - inbound workers that run the deliver_sm/data_sm handler and write the response only
//     after the handler returned: OK when it returned nil, its status otherwise.
type session struct {
	cfg  *Config
	name string // "lonestar/1 tx"
	log  *slog.Logger
	conn net.Conn
	r    *bufio.Reader

	wmu     sync.Mutex
	w       *bufio.Writer
	writers atomic.Int32 // writers queued or writing; the one that brings it to 0 flushes
	werr    error        // sticky write error, under wmu
	// unflushed (under wmu): the buffer holds frames the last writer will flush after
	// its yield, unless another flushes first.
	unflushed bool

	seq atomic.Uint32

	pmu      sync.Mutex
	pending  map[uint64]*call
	draining atomic.Bool // no new submit_sm (Stop, SMSC unbind)

	window  chan struct{}
	inbound chan inboundPDU
	handle  func(ctx context.Context, in inboundPDU) uint32 // nil on transmitter sessions
	hctx    context.Context                                 // handlers' context: outlives the connection until Stop's bound

	done      chan struct{} // closed when the connection is gone
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // reader, keeper, workers
	busy      atomic.Int32   // inbound PDUs being handled or queued
	closeAt   atomic.Int64   // unix nanoseconds after which the keeper closes (SMSC unbound us)
	stats     *bindStats
}

// call is one request waiting for its response.
type call struct {
	key      uint64 // response command id << 32 | sequence number
	deadline int64  // unix nanoseconds
	window   bool   // holds a window slot
	ch       chan result
}

// callPool recycles calls (and their channels): one submit_sm's call is taken in start
// and given back by whoever received its result, which is then its only holder (a call
// leaves pending before it is settled).
var callPool = sync.Pool{New: func() any { return &call{ch: make(chan result, 1)} }}

func newCall(key uint64, deadline int64, window bool) *call {
	c := callPool.Get().(*call)
	c.key, c.deadline, c.window = key, deadline, window
	return c
}

// releaseCall gives back a call whose result was received from c.ch.
func releaseCall(c *call) { callPool.Put(c) }

type result struct {
	status uint32
	msgID  string
	err    error // errRespTimeout, errBindLost; nil when a response came
}

// inboundPDU is an SMSC-originated request copied off the wire for a worker.
type inboundPDU struct {
	id   pdu.ID
	seq  uint32
	body []byte
}

func callKey(respID pdu.ID, seq uint32) uint64 { return uint64(respID)<<32 | uint64(seq) }

const (
	inboundQueue = 1024                   // deliver_sm read ahead of the handlers, per connection (plus the window)
	inboundWait  = 200 * time.Millisecond // how long the reader waits for room before refusing a deliver_sm
	maxPDU       = 64 << 10               // larger PDUs close the connection
	writeBufSize = 32 << 10
	readBufSize  = 32 << 10
)

// dialSession connects and binds. bindID is pdu.BindTransceiverID, BindTransmitterID or
// BindReceiverID. handle is nil for a transmitter.
func dialSession(ctx context.Context, cfg *Config, name string, bindID pdu.ID, handle func(context.Context, inboundPDU) uint32,
	hctx context.Context, log *slog.Logger, stats *bindStats) (*session, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr())
	if err != nil {
		return nil, err
	}
	s := &session{
		cfg:     cfg,
		name:    name,
		log:     log,
		conn:    conn,
		r:       bufio.NewReaderSize(conn, readBufSize),
		w:       bufio.NewWriterSize(conn, writeBufSize),
		pending: make(map[uint64]*call),
		window:  make(chan struct{}, cfg.Window),
		handle:  handle,
		hctx:    hctx,
		done:    make(chan struct{}),
		stats:   stats,
	}
	if handle != nil {
		s.inbound = make(chan inboundPDU, inboundQueue+cfg.Window)
	}
	s.wg.Add(1)
	go s.readLoop()
	if err := s.bind(ctx, bindID); err != nil {
		s.close(err)
		s.wg.Wait()
		return nil, err
	}
	s.wg.Add(1)
	go s.keeper()
	if handle != nil {
		for range cfg.InboundWorkers {
			s.wg.Add(1)
			go s.worker()
		}
	}
	return s, nil
}

func (s *session) bind(ctx context.Context, id pdu.ID) error {
	var p pdu.Body
	switch id {
	case pdu.BindTransmitterID:
		p = pdu.NewBindTransmitter()
	case pdu.BindReceiverID:
		p = pdu.NewBindReceiver()
	default:
		p = pdu.NewBindTransceiver()
	}
	f := p.Fields()
	f.Set(pdufield.SystemID, s.cfg.SystemID)
	f.Set(pdufield.Password, s.cfg.Password)
	f.Set(pdufield.SystemType, s.cfg.SystemType)
	f.Set(pdufield.InterfaceVersion, uint8(0x34))
	frame, err := encode(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ResponseTimeout)
	defer cancel()
	r, err := s.request(ctx, frame, id|0x80000000)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if r.status != StatusOK {
		return fmt.Errorf("bind: %w", &SubmitError{Status: r.status, Reason: statusName(r.status)})
	}
	return nil
}

// encode serialises a PDU built with go-smpp's codec.
func encode(p pdu.Body) ([]byte, error) {
	var b bytes.Buffer
	if err := p.SerializeTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (s *session) nextSeq() uint32 {
	for {
		n := s.seq.Add(1) & 0x7FFFFFFF // SMPP sequence numbers are 1..0x7FFFFFFF
		if n != 0 {
			return n
		}
	}
}

// request writes a control PDU (bind, enquire_link, unbind) and waits for its response.
func (s *session) request(ctx context.Context, frame []byte, respID pdu.ID) (result, error) {
	c, err := s.start(frame, respID, false)
	if err != nil {
		return result{}, err
	}
	select {
	case r := <-c.ch:
		return r, r.err
	case <-ctx.Done():
		s.forget(c)
		return result{}, ctx.Err()
	}
}

// start numbers frame, registers the call and writes it. errNotSent means the SMSC
// cannot have seen it; any other error means it may have.
func (s *session) start(frame []byte, respID pdu.ID, window bool) (*call, error) {
	seq := s.nextSeq()
	binary.BigEndian.PutUint32(frame[12:16], seq)
	now := time.Now().UnixNano()
	c := newCall(callKey(respID, seq), now+int64(s.cfg.ResponseTimeout), window)
	s.pmu.Lock()
	if s.pending == nil || (window && s.draining.Load()) {
		s.pmu.Unlock()
		if window {
			<-s.window
		}
		return nil, errNotSent
	}
	s.pending[c.key] = c
	s.pmu.Unlock()
	if written, err := s.write(frame); err != nil && !written {
		if s.forget(c) {
			return nil, errNotSent
		}
		<-c.ch // settled by close concurrently; still never sent
		return nil, errNotSent
	}
	return c, nil
}

// forget removes a call that will not be waited for; it reports whether it was still
// pending (if not, a result is in or on its way to c.ch).
func (s *session) forget(c *call) bool {
	s.pmu.Lock()
	_, ok := s.pending[c.key]
	if ok {
		delete(s.pending, c.key)
	}
	s.pmu.Unlock()
	if ok && c.window {
		<-s.window
	}
	return ok
}

// settle hands a result to a call no longer in pending and frees its window slot.
func (s *session) settle(c *call, r result) {
	if c.window {
		<-s.window
	}
	c.ch <- r
}

// write adds frame to the connection's buffer and flushes when no other writer is
// queued. written reports whether frame reached the buffer (and so maybe the SMSC).
func (s *session) write(frame []byte) (written bool, err error) {
	s.writers.Add(1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		s.writers.Add(-1)
		return false, s.werr
	}
	_, err = s.w.Write(frame)
	return true, s.flushLast(err)
}

// flushLast ends a write begun with writers.Add(1) under wmu: the last writer in line
// flushes, and a write error closes the connection.
func (s *session) flushLast(err error) error {
	if last := s.writers.Add(-1) == 0; err == nil && last {
		// Yield once before the flush, without wmu: writers made runnable together (the
		// responses of handlers that one group commit released, a dispatcher batch's
		// submits) join this flush instead of each paying a write syscall. Whoever finds
		// the buffer still unflushed and no writer in line after the yield flushes.
		s.unflushed = true
		s.wmu.Unlock()
		runtime.Gosched()
		s.wmu.Lock()
		if !s.unflushed || s.writers.Load() != 0 || s.werr != nil {
			return nil // flushed by another writer, or the one in line will
		}
		s.unflushed = false
		s.conn.SetWriteDeadline(time.Now().Add(s.cfg.ResponseTimeout))
		err = s.w.Flush()
	}
	if err != nil {
		s.werr = err
		s.close(fmt.Errorf("write: %w", err)) // close never takes wmu
	}
	return err
}

// writeResp answers an SMSC request. It encodes the response in the write buffer's
// free space, under wmu: no allocation.
func (s *session) writeResp(id pdu.ID, status uint32, seq uint32, withMsgID bool) {
	n := pdu.HeaderLen
	if withMsgID {
		n++ // empty message_id C-string
	}
	s.writers.Add(1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.werr != nil {
		s.writers.Add(-1)
		return
	}
	b := s.w.AvailableBuffer()
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = binary.BigEndian.AppendUint32(b, uint32(id))
	b = binary.BigEndian.AppendUint32(b, status)
	b = binary.BigEndian.AppendUint32(b, seq)
	if withMsgID {
		b = append(b, 0)
	}
	_, err := s.w.Write(b)
	s.flushLast(err)
}

// readLoop is the only reader of the connection.
func (s *session) readLoop() {
	defer s.wg.Done()
	defer func() {
		if s.inbound != nil {
			close(s.inbound)
		}
	}()
	var hdr [pdu.HeaderLen]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(s.r, hdr[:]); err != nil {
			s.close(readErr(err))
			return
		}
		n := binary.BigEndian.Uint32(hdr[0:])
		id := pdu.ID(binary.BigEndian.Uint32(hdr[4:]))
		status := binary.BigEndian.Uint32(hdr[8:])
		seq := binary.BigEndian.Uint32(hdr[12:])
		if n < pdu.HeaderLen || n > maxPDU {
			s.close(fmt.Errorf("read: bad command_length %d", n))
			return
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		body := buf[:n-pdu.HeaderLen]
		if _, err := io.ReadFull(s.r, body); err != nil {
			s.close(readErr(err))
			return
		}
		if id&0x80000000 != 0 {
			s.response(id, status, seq, body)
		} else {
			s.smscRequest(id, seq, body)
		}
	}
}

func readErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("read: %w: connection closed by SMSC", errBindLost)
	}
	return fmt.Errorf("read: %w", err)
}

// response settles the pending request with this command id and sequence number.
func (s *session) response(id pdu.ID, status, seq uint32, body []byte) {
	var c *call
	s.pmu.Lock()
	if id == pdu.GenericNACKID { // answers whichever request had this sequence number
		for _, rid := range []pdu.ID{pdu.SubmitSMRespID, pdu.EnquireLinkRespID, pdu.UnbindRespID,
			pdu.BindTransceiverRespID, pdu.BindTransmitterRespID, pdu.BindReceiverRespID} {
			if c = s.pending[callKey(rid, seq)]; c != nil {
				break
			}
		}
		if status == StatusOK {
			status = StatusUnknownErr
		}
	} else {
		c = s.pending[callKey(id, seq)]
	}
	if c != nil {
		delete(s.pending, c.key)
	}
	s.pmu.Unlock()
	var msgID string
	if id == pdu.SubmitSMRespID && len(body) > 0 {
		if i := bytes.IndexByte(body, 0); i >= 0 {
			msgID = string(body[:i])
		} else {
			msgID = string(body)
		}
	}
	if c == nil {
		s.stats.late.Add(1)
		s.log.Warn("response with no request waiting", "cmd", id.String(), "seq", seq, "status", statusLabel(status), "msg_id", msgID)
		return
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("pdu in", "cmd", id.String(), "seq", seq, "status", statusLabel(status), "msg_id", msgID)
	}
	s.settle(c, result{status: status, msgID: msgID})
}

// smscRequest handles a request the SMSC started. deliver_sm and data_sm go to the
// workers, copied; they are answered there once the handler returned.
func (s *session) smscRequest(id pdu.ID, seq uint32, body []byte) {
	switch id {
	case pdu.EnquireLinkID:
		s.writeResp(pdu.EnquireLinkRespID, StatusOK, seq, false)
	case pdu.UnbindID:
		s.log.Info("SMSC unbinds", "smsc", s.cfg.Name)
		s.draining.Store(true)
		s.writeResp(pdu.UnbindRespID, StatusOK, seq, false)
		// Keep reading: responses to submits in flight may still come before the SMSC
		// closes; the keeper closes after a response timeout at most.
		s.closeAt.CompareAndSwap(0, time.Now().Add(s.cfg.ResponseTimeout).UnixNano())
	case pdu.DeliverSMID, pdu.DataSMID:
		resp := id | 0x80000000
		if s.inbound == nil {
			s.writeResp(resp, StatusInvCmdID, seq, true)
			return
		}
		in := inboundPDU{id: id, seq: seq, body: append([]byte(nil), body...)}
		s.busy.Add(1)
		select {
		case s.inbound <- in:
			return
		default:
		}
		// Workers saturated: hold the reader (TCP pushes back on the SMSC) for a moment,
		// then refuse with a temporary error rather than stall our responses for long.
		t := time.NewTimer(inboundWait)
		defer t.Stop()
		select {
		case s.inbound <- in:
		case <-t.C:
			s.busy.Add(-1)
			s.stats.inboundFull.Add(1)
			s.writeResp(resp, StatusRxTempAppErr, seq, true)
		}
	case pdu.AlertNotificationID:
		// no response defined
	default:
		s.writeResp(pdu.GenericNACKID, StatusInvCmdID, seq, false)
	}
}

// worker runs the handler for inbound PDUs and answers each after its handler returned.
func (s *session) worker() {
	defer s.wg.Done()
	for in := range s.inbound {
		select {
		case <-s.done: // connection gone: the SMSC will deliver it again
			s.busy.Add(-1)
			continue
		default:
		}
		status := s.handle(s.hctx, in)
		s.writeResp(in.id|0x80000000, status, in.seq, true)
		s.busy.Add(-1)
	}
}

// keeper expires requests past their deadline and keeps the link checked.
func (s *session) keeper() {
	defer s.wg.Done()
	tick := min(max(s.cfg.ResponseTimeout/8, 5*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	nextEnquire := time.Now().Add(s.cfg.EnquireLink)
	var enq *call
	for {
		select {
		case <-s.done:
			return
		case now := <-t.C:
			s.expire(now.UnixNano())
			if at := s.closeAt.Load(); at != 0 && now.UnixNano() > at {
				s.close(fmt.Errorf("%w: unbound by SMSC", errBindLost))
				return
			}
			if enq != nil {
				select {
				case r := <-enq.ch:
					enq = nil
					if r.err != nil {
						s.close(fmt.Errorf("%w: enquire_link unanswered", errBindLost))
						return
					}
				default:
				}
			}
			if enq == nil && now.After(nextEnquire) {
				nextEnquire = now.Add(s.cfg.EnquireLink)
				frame := headerOnly(pdu.EnquireLinkID)
				c, err := s.start(frame, pdu.EnquireLinkRespID, false)
				if err == nil {
					enq = c
				}
			}
		}
	}
}

func headerOnly(id pdu.ID) []byte {
	b := make([]byte, pdu.HeaderLen)
	binary.BigEndian.PutUint32(b[0:], pdu.HeaderLen)
	binary.BigEndian.PutUint32(b[4:], uint32(id))
	return b
}

// expire settles every request past its deadline with errRespTimeout.
func (s *session) expire(now int64) {
	var late []*call
	s.pmu.Lock()
	for k, c := range s.pending {
		if c.deadline <= now {
			delete(s.pending, k)
			late = append(late, c)
		}
	}
	s.pmu.Unlock()
	for _, c := range late {
		s.settle(c, result{err: errRespTimeout})
	}
}

// close ends the connection once and settles every pending request with errBindLost.
func (s *session) close(err error) {
	s.closeOnce.Do(func() {
		s.closeErr = err
		close(s.done)
		s.conn.Close()
		s.pmu.Lock()
		p := s.pending
		s.pending = nil
		s.pmu.Unlock()
		for _, c := range p {
			s.settle(c, result{err: errBindLost})
		}
	})
}

// inFlight is the number of submit_sm waiting for a response.
func (s *session) inFlight() int { return len(s.window) }

// usable reports whether new submit_sm may go on this session.
func (s *session) usable() bool {
	select {
	case <-s.done:
		return false
	default:
	}
	return !s.draining.Load()
}

// shutdown unbinds cleanly: no new submits, wait (within ctx) for the ones in flight to
// be answered and for inbound handlers to finish, send unbind, wait for unbind_resp,
// close, and wait for every goroutine of the session.
func (s *session) shutdown(ctx context.Context) {
	s.draining.Store(true)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
wait:
	for len(s.window) > 0 || s.busy.Load() > 0 {
		select {
		case <-ctx.Done():
			break wait
		case <-s.done:
			break wait
		case <-t.C:
		}
	}
	uctx, cancel := context.WithTimeout(ctx, min(s.cfg.ResponseTimeout, 2*time.Second))
	_, err := s.request(uctx, headerOnly(pdu.UnbindID), pdu.UnbindRespID)
	cancel()
	if err != nil && ctx.Err() == nil {
		s.log.Debug("unbind", "smsc", s.cfg.Name, "error", err)
	}
	s.close(fmt.Errorf("%w: unbound", errBindLost))
	s.wg.Wait()
}
