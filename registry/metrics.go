package registry

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// PoolCollector exports PostgreSQL connection-pool statistics to Prometheus.
type PoolCollector struct {
	db                                    *pgxpool.Pool
	total, idle, acquired, max            *prometheus.Desc
	acquires, waits, waitSeconds, cancels *prometheus.Desc
}

// NewPoolCollector returns a collector for db's pool.
func NewPoolCollector(db *pgxpool.Pool) *PoolCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc("mhero_db_pool_"+name, help, nil, nil)
	}
	return &PoolCollector{db: db,
		total:       d("connections", "Open connections."),
		idle:        d("idle_connections", "Idle connections."),
		acquired:    d("acquired_connections", "Connections in use."),
		max:         d("max_connections", "Pool size limit."),
		acquires:    d("acquires_total", "Connections acquired from the pool."),
		waits:       d("empty_acquires_total", "Acquires that had to wait for a connection."),
		waitSeconds: d("acquire_wait_seconds_total", "Time spent waiting for a connection."),
		cancels:     d("canceled_acquires_total", "Acquires cancelled by their context."),
	}
}

// Describe implements prometheus.Collector.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.total, c.idle, c.acquired, c.max, c.acquires, c.waits, c.waitSeconds, c.cancels} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.db.Stat()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	n := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	g(c.total, float64(s.TotalConns()))
	g(c.idle, float64(s.IdleConns()))
	g(c.acquired, float64(s.AcquiredConns()))
	g(c.max, float64(s.MaxConns()))
	n(c.acquires, float64(s.AcquireCount()))
	n(c.waits, float64(s.EmptyAcquireCount()))
	n(c.waitSeconds, s.AcquireDuration().Seconds())
	n(c.cancels, float64(s.CanceledAcquireCount()))
}
