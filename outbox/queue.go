package outbox

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// QueueLength is how many messages wait for one MNO at one priority.
type QueueLength struct {
	MNO      string `json:"mno"` // "" = not routed yet
	Priority string `json:"priority"`
	Queued   int    `json:"queued"`    // waiting, due or not
	Due      int    `json:"due"`       // due now and not being sent (paced and retried messages wait for their time)
	InFlight int    `json:"in_flight"` // claimed by a dispatcher, outcome not recorded yet
	// OldestDue is the due time of the message that has waited longest; zero when none is due.
	OldestDue time.Time `json:"oldest_due,omitzero"`
}

// QueueLengths counts the queue by MNO and priority.
func (s *Store) QueueLengths(ctx context.Context) ([]QueueLength, error) {
	rows, err := s.db.Query(ctx, `SELECT mno, priority, count(*),
			count(*) FILTER (WHERE due_at <= now() AND (leased_until IS NULL OR leased_until <= now())),
			count(*) FILTER (WHERE leased_until > now()),
			min(due_at) FILTER (WHERE due_at <= now())
		FROM message_queue GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return nil, pgError(err, "Queue")
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueLength, error) {
		var q QueueLength
		var prio int
		var oldest *time.Time
		err := r.Scan(&q.MNO, &prio, &q.Queued, &q.Due, &q.InFlight, &oldest)
		q.Priority, q.OldestDue = priorityName(prio), deref(oldest)
		return q, err
	})
}

// queueCollector exports the queue lengths at each scrape.
type queueCollector struct {
	s             *Store
	queued, due   *prometheus.Desc
	log           *slog.Logger
	scrapeTimeout time.Duration
}

// QueueCollector returns a Prometheus collector of mhero_outbox_queued and
// mhero_outbox_due by MNO and priority, read from the queue at each scrape.
func (s *Store) QueueCollector() prometheus.Collector {
	return &queueCollector{s: s, log: s.log, scrapeTimeout: 5 * time.Second,
		queued: prometheus.NewDesc("mhero_outbox_queued", "Messages waiting to be sent, due or not.", []string{"mno", "priority"}, nil),
		due:    prometheus.NewDesc("mhero_outbox_due", "Messages due now and not yet sent.", []string{"mno", "priority"}, nil)}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.queued; ch <- c.due }

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.scrapeTimeout)
	defer cancel()
	qs, err := c.s.QueueLengths(ctx)
	if err != nil {
		c.log.Warn("queue lengths not collected", "err", err)
		return
	}
	for _, q := range qs {
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(q.Queued), q.MNO, q.Priority)
		ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(q.Due), q.MNO, q.Priority)
	}
}

// MNOCost is what one MNO billed in a month.
type MNOCost struct {
	MNO      string  `json:"mno"`
	Messages int     `json:"messages"`
	Segments int64   `json:"segments"`
	Cost     float64 `json:"cost"`
	Currency string  `json:"currency,omitempty"`
	// Unpriced counts segments submitted without a known rate (no planner then).
	Unpriced int64 `json:"unpriced_segments,omitempty"`
}

// CostReport sums the messages submitted in [from, to) by MNO: their segments at the
// rate configured when each was submitted. (A message is submitted at most send-ahead +
// spread + validity after it was created, which bounds the scan by creation time.)
func (s *Store) CostReport(ctx context.Context, from, to time.Time) ([]MNOCost, error) {
	rows, err := s.db.Query(ctx, `SELECT COALESCE(mno, ''), count(*), COALESCE(sum(segments), 0),
			COALESCE(sum(segments * segment_cost), 0)::float8, COALESCE(sum(segments) FILTER (WHERE segment_cost IS NULL), 0)
		FROM messages
		WHERE created_at >= $1::timestamptz - $3::bigint * interval '1 second' AND created_at < $2
		  AND submitted_at >= $1 AND submitted_at < $2
		GROUP BY 1 ORDER BY 1`, from, to, int64((MaxSendAhead + MaxSpread + 8*24*time.Hour).Seconds()))
	if err != nil {
		return nil, pgError(err, "Cost report")
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (MNOCost, error) {
		var c MNOCost
		err := r.Scan(&c.MNO, &c.Messages, &c.Segments, &c.Cost, &c.Unpriced)
		c.Cost, c.Currency = math.Round(c.Cost*1e4)/1e4, s.Currency
		return c, err
	})
}
