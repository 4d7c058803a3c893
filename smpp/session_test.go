package smpp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu"
	"github.com/mhero-health/mhero"
)

// scriptSMSC is a bare SMSC for session-level tests whose exact PDU order matters
// (the net/smtp basicServer idea): it binds anyone, answers enquire_link and unbind, and
// hands each submit_sm to onSubmit, which writes whatever it wants. The full simulator
// is smpptest; this one lets a test put a deliver_sm on the wire with the same sequence
// number as a submit_sm in flight, before its response.
type scriptSMSC struct {
	ln       net.Listener
	onSubmit func(c *scriptConn, seq uint32, body []byte)
	wg       sync.WaitGroup
	submits  atomic.Int64
	mute     atomic.Bool // leave enquire_link unanswered
	binds    atomic.Int64

	mu    sync.Mutex
	conns []*scriptConn
	resps []scriptResp // deliver_sm_resp seen
}

type scriptResp struct{ seq, status uint32 }

type scriptConn struct {
	s     *scriptSMSC
	c     net.Conn
	wmu   sync.Mutex
	seq   atomic.Uint32 // our deliver_sm numbering, from 1
	msgID atomic.Uint64
}

func newScriptSMSC(t testing.TB, onSubmit func(c *scriptConn, seq uint32, body []byte)) *scriptSMSC {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptSMSC{ln: ln, onSubmit: onSubmit}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc := &scriptConn{s: s, c: c}
			s.mu.Lock()
			s.conns = append(s.conns, sc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() { defer s.wg.Done(); sc.serve() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *scriptSMSC) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *scriptSMSC) conn(i int) *scriptConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[i]
}

func (s *scriptSMSC) delivered() []scriptResp {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]scriptResp(nil), s.resps...)
}

func (c *scriptConn) serve() {
	r := bufio.NewReader(c.c)
	for {
		var h [16]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(h[0:])
		id := pdu.ID(binary.BigEndian.Uint32(h[4:]))
		status := binary.BigEndian.Uint32(h[8:])
		seq := binary.BigEndian.Uint32(h[12:])
		body := make([]byte, n-16)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		switch id {
		case pdu.BindTransceiverID, pdu.BindTransmitterID, pdu.BindReceiverID:
			c.s.binds.Add(1)
			c.write(id|0x80000000, 0, seq, []byte("scriptsmsc\x00"))
		case pdu.EnquireLinkID:
			if !c.s.mute.Load() {
				c.write(pdu.EnquireLinkRespID, 0, seq, nil)
			}
		case pdu.UnbindID:
			c.write(pdu.UnbindRespID, 0, seq, nil)
			c.c.Close()
			return
		case pdu.SubmitSMID:
			c.s.submits.Add(1)
			if c.s.onSubmit != nil {
				c.s.onSubmit(c, seq, body)
			}
		case pdu.DeliverSMRespID, pdu.DataSMRespID:
			c.s.mu.Lock()
			c.s.resps = append(c.s.resps, scriptResp{seq, status})
			c.s.mu.Unlock()
		}
	}
}

func (c *scriptConn) write(id pdu.ID, status, seq uint32, body []byte) {
	b := make([]byte, 16, 16+len(body))
	binary.BigEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.BigEndian.PutUint32(b[4:], uint32(id))
	binary.BigEndian.PutUint32(b[8:], status)
	binary.BigEndian.PutUint32(b[12:], seq)
	c.wmu.Lock()
	c.c.Write(append(b, body...))
	c.wmu.Unlock()
}

// respond answers a submit_sm with a fresh decimal message id and returns it.
func (c *scriptConn) respond(seq uint32) string {
	id := strconv.FormatUint(c.msgID.Add(1)+1000, 10)
	c.write(pdu.SubmitSMRespID, 0, seq, append([]byte(id), 0))
	return id
}

// deliver sends a deliver_sm numbered seq (0 = next of our own sequence).
func (c *scriptConn) deliver(seq uint32, esm uint8, src, dst string, dc uint8, sm []byte, tlvs ...[]byte) uint32 {
	if seq == 0 {
		seq = c.seq.Add(1)
	}
	c.write(pdu.DeliverSMID, 0, seq, deliverBody(esm, src, dst, dc, sm, tlvs...))
	return seq
}

func deliverBody(esm uint8, src, dst string, dc uint8, sm []byte, tlvs ...[]byte) []byte {
	var b []byte
	cs := func(s string) { b = append(append(b, s...), 0) }
	cs("")                   // service_type
	b = append(b, 1, 1)      // source ton, npi
	cs(src)                  //
	b = append(b, 0, 0)      // dest ton, npi
	cs(dst)                  //
	b = append(b, esm, 0, 0) // esm_class, protocol_id, priority
	cs("")                   // schedule
	cs("")                   // validity
	b = append(b, 0, 0, dc, 0, byte(len(sm)))
	b = append(b, sm...)
	for _, t := range tlvs {
		b = append(b, t...)
	}
	return b
}

func tlv(tag uint16, v []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, tag)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func receiptText(id string) []byte {
	return []byte("id:" + id + " sub:001 dlvrd:001 submit date:2611251200 done date:2611251201 stat:DELIVRD err:000 text:hello")
}

func scriptConfig(s *scriptSMSC) Config {
	return Config{Name: "script", Host: "127.0.0.1", Port: s.port(), SystemID: "mhero", Password: "pw",
		SourceAddr: "384", Prefixes: []string{"231"}, Window: 10, ResponseTimeout: 2 * time.Second,
		ReconnectMin: 20 * time.Millisecond, ReconnectMax: 200 * time.Millisecond}
}

// startPool starts a pool and stops it at cleanup.
func startPool(t testing.TB, cfgs []Config, h Handlers) *Pool {
	t.Helper()
	p, err := NewPool(cfgs, h, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitBound(ctx); err != nil {
		t.Fatalf("WaitBound: %v", err)
	}
	return p
}

type receiptLog struct {
	mu  sync.Mutex
	ids map[string]int
}

func (l *receiptLog) HandleReceipt(_ context.Context, d DLR) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ids == nil {
		l.ids = make(map[string]int)
	}
	l.ids[d.MessageID]++
	return nil
}

func (l *receiptLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// TestSequenceCollision puts, for every submit_sm, a receipt deliver_sm with the same
// sequence number on the wire before the submit_sm_resp: the case go-smpp's client
// gets wrong. No submit may fail and no receipt may be lost.
func TestSequenceCollision(t *testing.T) {
	var prev sync.Map // conn → last message id, to receipt the previous submit
	smsc := newScriptSMSC(t, func(c *scriptConn, seq uint32, _ []byte) {
		if id, ok := prev.Load(c); ok {
			c.deliver(seq, 0x04, "231881234567", "384", 0, receiptText(id.(string)))
		}
		prev.Store(c, c.respond(seq))
	})
	rl := &receiptLog{}
	p := startPool(t, []Config{scriptConfig(smsc)}, Handlers{Receipt: rl})

	const n, workers = 400, 20
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				_, err := p.Send(t.Context(), &Message{To: "231881234567", Text: "collide " + strconv.Itoa(i)})
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	waitFor(t, func() bool { return rl.count() == n-1 }, "all %d receipts handled (have %d)", n-1, rl.count)
	for _, r := range smsc.delivered() {
		if r.status != 0 {
			t.Fatalf("deliver_sm_resp seq %d status %#x, want 0", r.seq, r.status)
		}
	}
}

// waitFor polls cond for up to 10s; the deadline guards a hang, it measures nothing.
func waitFor(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				if f, ok := a.(func() int); ok {
					args[i] = f()
				}
			}
			t.Fatalf("timed out waiting: "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDeliverAckAfterHandler: the deliver_sm_resp goes out only once the handler
// returned, and a failing handler gets ESME_RX_T_APPN so the SMSC retries.
func TestDeliverAckAfterHandler(t *testing.T) {
	smsc := newScriptSMSC(t, nil)
	entered, release := make(chan MO, 1), make(chan error)
	p := startPool(t, []Config{scriptConfig(smsc)}, Handlers{MO: MOHandlerFunc(func(ctx context.Context, m MO) error {
		entered <- m
		return <-release
	})})
	_ = p
	c := smsc.conn(0)

	tests := []struct {
		name       string
		handlerErr error
		wantStatus uint32
	}{
		{"stored", nil, StatusOK},
		{"handler failed", errors.New("database down"), StatusRxTempAppErr},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq := c.deliver(0, 0, "231881234567", "384", 0, []byte("STOCK ORS 20"))
			m := <-entered
			if m.Text != "STOCK ORS 20" || m.From != "231881234567" {
				t.Errorf("MO = %+v", m)
			}
			if got := len(smsc.delivered()); got != i {
				t.Fatalf("deliver_sm_resp sent while the handler runs (%d responses)", got)
			}
			release <- tt.handlerErr
			waitFor(t, func() bool { return len(smsc.delivered()) == i+1 }, "deliver_sm_resp")
			if r := smsc.delivered()[i]; r.seq != seq || r.status != tt.wantStatus {
				t.Errorf("deliver_sm_resp = %+v, want seq %d status %#x", r, seq, tt.wantStatus)
			}
		})
	}
}

// TestResponseTimeout: a submit_sm never answered is reported as outcome unknown and is
// not sent again.
func TestResponseTimeout(t *testing.T) {
	smsc := newScriptSMSC(t, func(*scriptConn, uint32, []byte) {}) // never answers
	cfg := scriptConfig(smsc)
	cfg.ResponseTimeout = 150 * time.Millisecond
	p := startPool(t, []Config{cfg}, Handlers{})
	_, err := p.Send(t.Context(), &Message{To: "231881234567", Text: "are you there"})
	if !errors.Is(err, ErrOutcomeUnknown) || IsTemporary(err) {
		t.Fatalf("Send = %v, want ErrOutcomeUnknown, not temporary", err)
	}
	time.Sleep(3 * cfg.ResponseTimeout) // room for a resend that must not happen
	if n := smsc.submits.Load(); n != 1 {
		t.Errorf("SMSC saw %d submit_sm, want 1 (no resend)", n)
	}
	if h := p.Health()[0]; h.Unknown != 1 {
		t.Errorf("Health().Unknown = %d, want 1", h.Unknown)
	}
}

func TestPermanentErrorKeepsStatus(t *testing.T) {
	smsc := newScriptSMSC(t, func(c *scriptConn, seq uint32, _ []byte) {
		c.write(pdu.SubmitSMRespID, StatusInvDstAdr, seq, nil)
	})
	p := startPool(t, []Config{scriptConfig(smsc)}, Handlers{})
	_, err := p.Send(t.Context(), &Message{To: "231881234567", Text: "x"})
	var se *SubmitError
	if !errors.As(err, &se) || se.Status != StatusInvDstAdr || se.Temporary {
		t.Fatalf("Send = %#v, want permanent *SubmitError with status 0x0B", err)
	}
	if n := smsc.submits.Load(); n != 1 {
		t.Errorf("SMSC saw %d submit_sm, want 1", n)
	}
}

func TestUnroutable(t *testing.T) {
	smsc := newScriptSMSC(t, nil)
	p := startPool(t, []Config{scriptConfig(smsc)}, Handlers{})
	if _, err := p.Route("254712345678"); !errors.Is(err, ErrUnroutable) {
		t.Errorf("Route = %v, want ErrUnroutable", err)
	}
	if _, err := p.Send(t.Context(), &Message{To: "254712345678", Text: "x"}); !errors.Is(err, ErrUnroutable) {
		t.Errorf("Send = %v, want ErrUnroutable", err)
	}
	if got, err := p.Route(mhero.MSISDN("231881234567")); got != "script" || err != nil {
		t.Errorf("Route = %q, %v", got, err)
	}
	if n := smsc.submits.Load(); n != 0 {
		t.Errorf("SMSC saw %d submit_sm", n)
	}
}

// TestSMSCUnbind: the SMSC unbinds us; we answer, and the pool binds again.
func TestSMSCUnbind(t *testing.T) {
	smsc := newScriptSMSC(t, func(c *scriptConn, seq uint32, _ []byte) { c.respond(seq) })
	cfg := scriptConfig(smsc)
	cfg.ResponseTimeout = 200 * time.Millisecond
	p := startPool(t, []Config{cfg}, Handlers{})
	smsc.conn(0).write(pdu.UnbindID, 0, 1, nil)
	waitFor(t, func() bool { return smsc.binds.Load() == 2 }, "a second bind")
	if err := p.WaitBound(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Send(t.Context(), &Message{To: "231881234567", Text: "after unbind"}); err != nil {
		t.Fatalf("Send after the SMSC unbound: %v", err)
	}
}

// TestDeadLink: enquire_link unanswered closes the connection, and the pool binds again.
func TestDeadLink(t *testing.T) {
	smsc := newScriptSMSC(t, nil)
	cfg := scriptConfig(smsc)
	cfg.EnquireLink, cfg.ResponseTimeout = 30*time.Millisecond, 60*time.Millisecond
	p := startPool(t, []Config{cfg}, Handlers{})
	smsc.mute.Store(true)
	waitFor(t, func() bool { return p.Health()[0].State == BindDown || smsc.binds.Load() > 1 }, "dead link noticed")
	smsc.mute.Store(false)
	waitFor(t, func() bool { return smsc.binds.Load() > 1 && p.Health()[0].State == BindOK }, "bound again")
	if h := p.Health()[0]; h.LastError == "" {
		t.Errorf("Health().LastError empty after a dead link")
	}
}

// TestDataSM: an MO as data_sm with message_payload (go-smpp's decoder lacks data_sm).
func TestDataSM(t *testing.T) {
	smsc := newScriptSMSC(t, nil)
	l := &moLog{}
	startPool(t, []Config{scriptConfig(smsc)}, Handlers{MO: l})
	var b []byte
	cs := func(s string) { b = append(append(b, s...), 0) }
	cs("")
	b = append(b, 1, 1)
	cs("231881234567")
	b = append(b, 0, 0)
	cs("384")
	b = append(b, 0, 0, 0) // esm_class, registered_delivery, data_coding
	b = append(b, tlv(0x0424, []byte("HELP"))...)
	smsc.conn(0).write(pdu.DataSMID, 0, 1, b)
	waitFor(t, func() bool { n, _, _ := l.lens(); return n == 1 }, "MO from data_sm")
	waitFor(t, func() bool { return len(smsc.delivered()) == 1 }, "data_sm_resp")
	if m := l.mos[0]; m.Text != "HELP" || m.From != "231881234567" {
		t.Errorf("MO = %+v", m)
	}
	if r := smsc.delivered()[0]; r.status != 0 {
		t.Errorf("data_sm_resp status %#x", r.status)
	}
}
