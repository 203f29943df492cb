package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// metrics counts status changes and exposes environments by status.
type metrics struct {
	transitions *prometheus.CounterVec
	readyTime   prometheus.Histogram
}

// newMetrics registers previewd's metrics. Scrapes read the store within
// ctx (the daemon's), since a Collector is given none.
func newMetrics(ctx context.Context, reg prometheus.Registerer, st *store.Store, log *slog.Logger) *metrics {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "previewd_environment_transitions_total",
			Help: "Environment status changes, by status.",
		}, []string{"status"}),
		readyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "previewd_rollout_seconds",
			Help:    "Time from the start of a rollout to ready.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
	}
	reg.MustRegister(m.transitions, m.readyTime, &envCollector{ctx: ctx, st: st, log: log})
	return m
}

// Notify implements reconcile.Notifier.
func (m *metrics) Notify(ctx context.Context, n env.Notice) error {
	m.transitions.WithLabelValues(string(n.Env.Status)).Inc()
	if n.Env.Status == env.StatusReady {
		m.readyTime.Observe(n.Took.Seconds())
	}
	return nil
}

var envDesc = prometheus.NewDesc("previewd_environments", "Live environments, by status.", []string{"status"}, nil)

// envCollector reads the store at scrape time.
type envCollector struct {
	ctx context.Context
	st  *store.Store
	log *slog.Logger
}

func (c *envCollector) Describe(ch chan<- *prometheus.Desc) { ch <- envDesc }

func (c *envCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	live, err := c.st.Live(ctx)
	if err != nil {
		c.log.Warn("reading environments for metrics", "err", err)
		return
	}
	counts := map[env.Status]int{}
	for _, e := range live {
		counts[e.Status]++
	}
	for _, s := range []env.Status{env.StatusPending, env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady, env.StatusFailed, env.StatusDeleting} {
		ch <- prometheus.MustNewConstMetric(envDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
}
