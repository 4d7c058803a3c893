package smpp

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the pool's Prometheus collectors. They exist whether or not a Registerer
// was given, so the code paths are the same; NewPool registers them when it was.
type metrics struct {
	submits   *prometheus.CounterVec   // mno, bind, status ("0x00" = accepted)
	unknown   *prometheus.CounterVec   // mno, bind: submit outcome unknown
	receipts  *prometheus.CounterVec   // mno, state
	inbound   *prometheus.CounterVec   // mno, kind (mo, mo_part, ussd, receipt), result (ok, error, busy)
	inflight  *prometheus.GaugeVec     // mno, bind
	bindState *prometheus.GaugeVec     // mno, bind: 0 down, 1 degraded, 2 ok
	breaker   *prometheus.GaugeVec     // mno, bind: 0 closed, 1 half-open, 2 open
	rate      *prometheus.GaugeVec     // mno: current submit_sm/s limit, 0 = unlimited
	latency   *prometheus.HistogramVec // mno: Send duration
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "mhero", "smpp"
	m := &metrics{
		submits: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "submits_total",
			Help: "submit_sm answered, by command_status (0x00 = accepted)."}, []string{"mno", "bind", "status"}),
		unknown: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "submit_outcome_unknown_total",
			Help: "submit_sm sent whose response never came (timeout, bind lost); not resent."}, []string{"mno", "bind"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "receipts_total",
			Help: "Delivery receipts received, by state."}, []string{"mno", "state"}),
		inbound: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "inbound_total",
			Help: "deliver_sm/data_sm handled, by kind and result."}, []string{"mno", "kind", "result"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "inflight",
			Help: "submit_sm waiting for their response."}, []string{"mno", "bind"}),
		bindState: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "bind_state",
			Help: "Bind state: 0 down, 1 degraded, 2 ok."}, []string{"mno", "bind"}),
		breaker: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "breaker_state",
			Help: "Circuit breaker: 0 closed, 1 half-open, 2 open."}, []string{"mno", "bind"}),
		rate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rate_limit",
			Help: "Current submit_sm per second limit of the account, 0 = unlimited."}, []string{"mno"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "send_duration_seconds",
			Help:    "Send duration, all segments and retries included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"mno"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.submits, m.unknown, m.receipts, m.inbound, m.inflight, m.bindState, m.breaker, m.rate, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// bindStats are one bind's counters for Health, kept beside the Prometheus ones so
// Health needs no registry.
type bindStats struct {
	submits     atomic.Int64 // submit_sm written
	accepted    atomic.Int64 // answered 0x00
	unknown     atomic.Int64 // outcome unknown
	late        atomic.Int64 // responses with no request waiting (after a timeout)
	inboundFull atomic.Int64 // deliver_sm answered ESME_RTHROTTLED: workers saturated
	throttledAt atomic.Int64 // unix nanoseconds of the last throttling answer

	mu       sync.Mutex
	statuses map[uint32]int64 // non-zero statuses
	receipts map[string]int64 // by state

	okCounter prometheus.Counter // cached: the hot path does no label lookup
	inflight  prometheus.Gauge
	m         *metrics
	mno, bind string

	// Label sets resolved once, on first use (so /metrics shows the same series as
	// before), under mu: a map lookup instead of WithLabelValues's hashing per PDU.
	statusC  map[uint32]prometheus.Counter
	receiptC map[string]prometheus.Counter
	inboundC map[inboundKey]prometheus.Counter
}

type inboundKey struct{ kind, result string }

func (s *bindStats) init(m *metrics, mno, bind string) {
	s.mno, s.bind = mno, bind
	s.statuses = make(map[uint32]int64)
	s.receipts = make(map[string]int64)
	s.okCounter = m.submits.WithLabelValues(mno, bind, statusLabel(StatusOK))
	s.inflight = m.inflight.WithLabelValues(mno, bind)
	s.m = m
	s.statusC = make(map[uint32]prometheus.Counter)
	s.receiptC = make(map[string]prometheus.Counter)
	s.inboundC = make(map[inboundKey]prometheus.Counter)
}

func (s *bindStats) answered(status uint32) {
	if status == StatusOK {
		s.accepted.Add(1)
		s.okCounter.Inc()
		return
	}
	s.mu.Lock()
	s.statuses[status]++
	c := s.statusC[status]
	if c == nil {
		c = s.m.submits.WithLabelValues(s.mno, s.bind, statusLabel(status))
		s.statusC[status] = c
	}
	s.mu.Unlock()
	c.Inc()
}

// receipt counts a receipt for Health and in mhero_smpp_receipts_total.
func (s *bindStats) receipt(state string) {
	s.mu.Lock()
	s.receipts[state]++
	c := s.receiptC[state]
	if c == nil {
		c = s.m.receipts.WithLabelValues(s.mno, state)
		s.receiptC[state] = c
	}
	s.mu.Unlock()
	c.Inc()
}

// inbound counts a deliver_sm/data_sm in mhero_smpp_inbound_total.
func (s *bindStats) inbound(kind, result string) {
	k := inboundKey{kind, result}
	s.mu.Lock()
	c := s.inboundC[k]
	if c == nil {
		c = s.m.inbound.WithLabelValues(s.mno, kind, result)
		s.inboundC[k] = c
	}
	s.mu.Unlock()
	c.Inc()
}

// snapshot copies the maps for Health.
func (s *bindStats) snapshot() (statuses map[string]int64, receipts map[string]int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	statuses = map[string]int64{statusLabel(StatusOK): s.accepted.Load()}
	for k, v := range s.statuses {
		statuses[statusLabel(k)] = v
	}
	receipts = make(map[string]int64, len(s.receipts))
	for k, v := range s.receipts {
		receipts[k] = v
	}
	return statuses, receipts
}
