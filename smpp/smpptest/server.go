// Package smpptest is an in-process SMSC for tests, demos and load: a real SMPP 3.4 server
// on 127.0.0.1, built on go-smpp's PDU codec, in the shape of net/http/httptest.
//
// It answers binds (transmitter, receiver, transceiver) with the matching *_resp and the
// request's sequence number, enquire_link, unbind and submit_sm; sends delivery receipts
// and MO/USSD deliver_sm numbered from 1 on each connection, as real SMSCs do (the same
// numbers as the client's own submit_sm, which a client must tell apart); and scripts the
// failures clients must survive: throttling, full queues, slow and missing responses,
// dropped connections, rejected binds.
//
// It reads binds with go-smpp's pdu.Decode and submit_sm with the same decoding of its
// fields without go-smpp's per-field allocations (smpp/internal/smbody). It writes deliver_sm with its own encoder:
// go-smpp's DeliverSM serialises a stray UDH-length octet when esm_class has no UDHI and
// corrupts short_message. Responses are written straight from their header fields. It
// does not import package smpp (mhero's client), so that package's own tests can use it.
package smpptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fiorix/go-smpp/smpp/pdu/pdutlv"
)

// Config scripts the SMSC. The zero value accepts any bind and every submit_sm at once.
type Config struct {
	SystemID, Password string // accepted credentials; "" system_id = any, "" password = any

	MessageIDFormat string // "decimal" (default) or "hex" for submit_sm_resp ids
	ReceiptIDFormat string // format of the id inside receipts ("" = same as MessageIDFormat)

	Receipts          bool               // send deliver_sm receipts when registered_delivery asks
	ReceiptDelay      time.Duration      // from submit_sm to its receipt
	ReceiptBeforeResp bool               // send the receipt before the submit_sm_resp (holds every response until its receipt is due)
	ReceiptStates     map[string]float64 // weights of stat words, e.g. {"DELIVRD": .9, "UNDELIV": .1}; default all DELIVRD
	ReceiptTLVs       bool               // receipts also carry receipted_message_id and message_state TLVs

	ThrottleTPS int           // answer ESME_RTHROTTLED (0x58) above this many accepted submit_sm in any 1 s (per server); 0 = unlimited
	MaxWindow   int           // answer ESME_RMSGQFUL (0x14) when this many submit_sm are unanswered on one bind; 0 = unlimited
	Latency     time.Duration // delay before each submit_sm_resp; responses stay concurrent (FIFO per connection)
	DropEvery   int           // close a connection on its Nth, 2Nth... PDU received, without answering it; 0 = never
	RejectBinds bool          // answer every bind with ESME_RBINDFAIL (0x0D)

	SubmitStatus  func(sm Submit) uint32 // optional: command_status for a submit (e.g. 0x0B for a bad number); 0 accepts
	NoResponseFor func(sm Submit) bool   // optional: never answer this submit (response-timeout tests); not counted in flight

	DeliverTimeout time.Duration // wait for a deliver_sm_resp before resending once, then giving up; default 5 s
	SubmitHistory  int           // how many accepted submits Submits keeps, newest; 0 = all, -1 = none (long load runs)

	Addr   string       // listen address for Start; "" = 127.0.0.1:0
	Logger *slog.Logger // nil = discard. PDUs at Debug; never passwords or message text above Debug
}

// Submit is one submit_sm as the SMSC received it.
type Submit struct {
	SystemID           string                // of the bind that sent it
	Seq                uint32                // its sequence number
	ServiceType        string                // e.g. "USSD"
	Src, Dst           string                // source_addr, destination_addr
	ESMClass           byte                  // 0x40 = UDHI
	DataCoding         byte                  // data_coding
	RegisteredDelivery byte                  // registered_delivery
	ValidityPeriod     string                // as sent, "" for the SMSC default
	ShortMessage       []byte                // short_message, UDH included
	UDH                []byte                // user data header (length octet included) when ESMClass has UDHI
	Concat             *Part                 // concatenation element of the UDH, nil when none
	TLVs               map[pdutlv.Tag][]byte // optional parameters, raw; nil when none
	MessageID          string                // the id the SMSC answered ("" until accepted)
	ReceivedAt         time.Time
}

// Part is a concatenated-SMS element (IEI 0x00 or 0x08).
type Part struct {
	Ref   uint16
	Total uint8
	Seq   uint8
}

// USSDServiceOp returns the ussd_service_op TLV (0x0501) when the submit carries one.
func (sm Submit) USSDServiceOp() (op byte, ok bool) {
	v, ok := sm.TLVs[pdutlv.TagUssdServiceOp]
	if !ok || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// Stats are the server's counters since it started.
type Stats struct {
	Conns          int64 `json:"conns"`           // connections open now
	Binds          int64 `json:"binds"`           // successful binds
	BindsRejected  int64 `json:"binds_rejected"`  // binds answered with an error
	Submits        int64 `json:"submits"`         // submit_sm received
	Accepted       int64 `json:"accepted"`        // answered ESME_ROK
	Throttled      int64 `json:"throttled"`       // answered 0x58
	QueueFull      int64 `json:"queue_full"`      // answered 0x14
	Failed         int64 `json:"failed"`          // answered another error (script, bind state)
	Unanswered     int64 `json:"unanswered"`      // left unanswered by NoResponseFor
	ReceiptsSent   int64 `json:"receipts_sent"`   // receipt deliver_sm written (resends not counted)
	ReceiptsQueued int64 `json:"receipts_queued"` // receipts waiting for a receiver bind now
	MOSent         int64 `json:"mo_sent"`         // MO and USSD deliver_sm written (resends not counted)
	DeliverAcked   int64 `json:"deliver_acked"`   // deliver_sm_resp received for a deliver_sm in flight
	DeliverResent  int64 `json:"deliver_resent"`  // deliver_sm resent after DeliverTimeout
	DeliverFailed  int64 `json:"deliver_failed"`  // deliver_sm given up after the resend timed out too
	EnquireLinks   int64 `json:"enquire_links"`   // enquire_link answered
	GenericNacks   int64 `json:"generic_nacks"`   // generic_nack sent
	Drops          int64 `json:"drops"`           // connections closed by DropEvery
	MaxInFlight    int64 `json:"max_in_flight"`   // most submit_sm unanswered at once on one bind
}

type counters struct {
	conns, binds, bindsRejected, submits, accepted, throttled, queueFull, failed, unanswered atomic.Int64
	receiptsSent, moSent, deliverAcked, deliverResent, deliverFailed, enquireLinks, nacks    atomic.Int64
	drops, maxInFlight                                                                       atomic.Int64
}

// Server is an in-process SMSC. Create it with NewServer, NewUnstartedServer or
// NewServerAt; Close it when done.
type Server struct {
	cfg    Config
	log    *slog.Logger
	debug  bool
	ln     net.Listener
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	st     counters

	nextID  atomic.Uint64 // message ids
	nextRef atomic.Uint32 // concatenation references of MO texts
	stats   statPicker

	throttle throttle
	receipts *delayQueue[*pendingReceipt] // receipts waiting for ReceiptDelay

	mu        sync.Mutex
	started   bool
	closed    bool
	conns     map[*conn]struct{}
	queued    map[string][]*deliverSM // receipts per system_id waiting for a receiver bind
	nqueued   int
	submits   []Submit
	hooks     []func(Submit)
	hookCh    chan Submit
	rrDeliver int
}

// msgIDBase starts message ids where hex and decimal differ visibly (A0000001 vs 2684354561).
const msgIDBase = 0xA0000000

// maxQueuedReceipts bounds receipts kept for a receiver bind that has not come yet.
const maxQueuedReceipts = 100000

// NewServer starts an SMSC on 127.0.0.1 at a free port (or cfg.Addr).
// It panics if it cannot listen, as httptest.NewServer does.
func NewServer(cfg Config) *Server {
	s := NewUnstartedServer(cfg)
	s.Start()
	return s
}

// NewServerAt starts an SMSC listening on addr, returning the listen error.
func NewServerAt(addr string, cfg Config) (*Server, error) {
	cfg.Addr = addr
	s := NewUnstartedServer(cfg)
	ln, err := net.Listen("tcp", s.listenAddr())
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.serve(ln)
	return s, nil
}

// NewUnstartedServer returns an SMSC that does not listen until Start. Configure hooks
// with OnSubmit before starting.
func NewUnstartedServer(cfg Config) *Server {
	if cfg.MessageIDFormat == "" {
		cfg.MessageIDFormat = "decimal"
	}
	if cfg.ReceiptIDFormat == "" {
		cfg.ReceiptIDFormat = cfg.MessageIDFormat
	}
	if cfg.DeliverTimeout <= 0 {
		cfg.DeliverTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:    cfg,
		log:    log,
		debug:  log.Enabled(ctx, slog.LevelDebug),
		ctx:    ctx,
		cancel: cancel,
		conns:  map[*conn]struct{}{},
		queued: map[string][]*deliverSM{},
		stats:  newStatPicker(cfg.ReceiptStates),
	}
	s.nextID.Store(msgIDBase)
	s.throttle.init(cfg.ThrottleTPS)
	s.receipts = newDelayQueue(func(p *pendingReceipt) { s.sendReceipt(p) })
	return s
}

func (s *Server) listenAddr() string {
	if s.cfg.Addr == "" {
		return "127.0.0.1:0"
	}
	return s.cfg.Addr
}

// Start listens on cfg.Addr (127.0.0.1:0 by default). It panics if it cannot.
func (s *Server) Start() {
	ln, err := net.Listen("tcp", s.listenAddr())
	if err != nil {
		panic(fmt.Sprintf("smpptest: listen on %s: %v", s.listenAddr(), err))
	}
	s.serve(ln)
}

func (s *Server) serve(ln net.Listener) {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		ln.Close()
		panic("smpptest: server already started")
	}
	s.started = true
	s.ln = ln
	if len(s.hooks) > 0 {
		s.hookCh = make(chan Submit, 1024)
		s.wg.Add(1)
		go s.runHooks()
	}
	s.mu.Unlock()
	s.wg.Add(3)
	go s.acceptLoop()
	go func() { defer s.wg.Done(); s.receipts.run(s.ctx.Done()) }()
	go s.janitor()
	s.log.Info("smsc listening", "addr", ln.Addr().String())
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Close stops listening, closes every connection and waits for every goroutine of the
// server to end. It is safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	for _, c := range conns {
		c.close()
	}
	s.wg.Wait()
}

// OnSubmit registers f to be called with every accepted submit_sm, in order, from one
// goroutine of the server's own (f may call DeliverMO or DeliverUSSD). Register hooks
// before Start.
func (s *Server) OnSubmit(f func(Submit)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("smpptest: OnSubmit after Start")
	}
	s.hooks = append(s.hooks, f)
}

func (s *Server) runHooks() {
	defer s.wg.Done()
	for {
		select {
		case sm := <-s.hookCh:
			for _, f := range s.hooks {
				f(sm)
			}
		case <-s.ctx.Done():
			return
		}
	}
}

// Submits returns a copy of every accepted submit_sm (or the newest SubmitHistory), in
// the order they were accepted.
func (s *Server) Submits() []Submit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Submit(nil), s.submits...)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	queued := int64(s.nqueued)
	s.mu.Unlock()
	return Stats{
		Conns: s.st.conns.Load(), Binds: s.st.binds.Load(), BindsRejected: s.st.bindsRejected.Load(),
		Submits: s.st.submits.Load(), Accepted: s.st.accepted.Load(), Throttled: s.st.throttled.Load(),
		QueueFull: s.st.queueFull.Load(), Failed: s.st.failed.Load(), Unanswered: s.st.unanswered.Load(),
		ReceiptsSent: s.st.receiptsSent.Load(), ReceiptsQueued: queued, MOSent: s.st.moSent.Load(),
		DeliverAcked: s.st.deliverAcked.Load(), DeliverResent: s.st.deliverResent.Load(),
		DeliverFailed: s.st.deliverFailed.Load(), EnquireLinks: s.st.enquireLinks.Load(),
		GenericNacks: s.st.nacks.Load(), Drops: s.st.drops.Load(), MaxInFlight: s.st.maxInFlight.Load(),
	}
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Warn("smsc accept", "error", err)
			}
			return
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.st.conns.Add(1)
		c.start()
	}
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.st.conns.Add(-1)
}

// record stores an accepted submit and hands it to the hooks.
func (s *Server) record(sm Submit) {
	if s.cfg.SubmitHistory >= 0 || s.hookCh != nil {
		s.mu.Lock()
		if s.cfg.SubmitHistory >= 0 {
			s.submits = append(s.submits, sm)
			if h := s.cfg.SubmitHistory; h > 0 && len(s.submits) >= 2*h {
				s.submits = append(s.submits[:0], s.submits[len(s.submits)-h:]...)
			}
		}
		s.mu.Unlock()
	}
	if s.hookCh != nil {
		select {
		case s.hookCh <- sm:
		case <-s.ctx.Done():
		}
	}
}

func (s *Server) newMessageID() (n uint64) { return s.nextID.Add(1) }

func formatID(n uint64, format string) string {
	if format == "hex" {
		return fmt.Sprintf("%X", n)
	}
	return strconv.FormatUint(n, 10)
}

// throttle is a sliding one-second window over accepted submits: a ring of the times of
// the last tps acceptances.
type throttle struct {
	mu   sync.Mutex
	ring []int64
	next int
}

func (t *throttle) init(tps int) {
	if tps > 0 {
		t.ring = make([]int64, tps)
	}
}

// allow reports whether one more submit fits in the last second, and records it if so.
func (t *throttle) allow(now time.Time) bool {
	if t.ring == nil {
		return true
	}
	ns := now.UnixNano()
	t.mu.Lock()
	defer t.mu.Unlock()
	if oldest := t.ring[t.next]; oldest != 0 && ns-oldest < int64(time.Second) {
		return false
	}
	t.ring[t.next] = ns
	t.next = (t.next + 1) % len(t.ring)
	return true
}
