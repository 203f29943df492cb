package daemon

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/internal/env"
)

// metrics counts status changes and exposes environments by status.
type metrics struct {
	transitions *prometheus.CounterVec
	readyTime   prometheus.Histogram
}

// newMetrics registers previewd's metrics. Scrapes read the store within
// ctx (the daemon's), since a Collector is given none; rates price each
// environment's usage (lifecycle.cost).
func newMetrics(ctx context.Context, reg prometheus.Registerer, st liveLister, rates env.Rates, log *slog.Logger) *metrics {
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
	reg.MustRegister(m.transitions, m.readyTime, &envCollector{ctx: ctx, st: st, rates: rates, log: log})
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

var (
	envDesc     = prometheus.NewDesc("previewd_environments", "Live environments, by status.", []string{"status"}, nil)
	runningDesc = prometheus.NewDesc("previewd_environments_running", "Live environments holding a running slot (building, migrating, starting or ready), production included.", nil, nil)
	runDesc     = prometheus.NewDesc("previewd_environment_run_seconds_total", "Time the environment has run, since its usage began.", []string{"env"}, nil)
	cpuDesc     = prometheus.NewDesc("previewd_environment_cpu_seconds_total", "CPU time the environment has used (requested, on Kubernetes).", []string{"env"}, nil)
	peakDesc    = prometheus.NewDesc("previewd_environment_memory_peak_bytes", "The environment's peak memory (requested, on Kubernetes).", []string{"env"}, nil)
	costDesc    = prometheus.NewDesc("previewd_environment_cost", "What the environment's usage costs at lifecycle.cost's rates.", []string{"env", "currency"}, nil)
)

// statuses are the ones previewd_environments reports, zero or not.
var statuses = []env.Status{
	env.StatusPending, env.StatusQueued, env.StatusBuilding, env.StatusMigrating, env.StatusStarting,
	env.StatusReady, env.StatusSleeping, env.StatusFailed, env.StatusDeleting,
}

// running reports whether an environment in status s holds a running slot.
func running(s env.Status) bool {
	switch s {
	case env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusReady:
		return true
	}
	return false
}

// liveLister is what the metrics read of the store.
type liveLister interface {
	Live(ctx context.Context) ([]env.Environment, error)
}

// envCollector reads the store at scrape time.
type envCollector struct {
	ctx   context.Context
	st    liveLister
	rates env.Rates
	log   *slog.Logger
}

func (c *envCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{envDesc, runningDesc, runDesc, cpuDesc, peakDesc, costDesc} {
		ch <- d
	}
}

func (c *envCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	defer cancel()
	live, err := c.st.Live(ctx)
	if err != nil {
		c.log.Warn("reading environments for metrics", "err", err)
		return
	}
	counts := map[env.Status]int{}
	n := 0
	for _, e := range live {
		counts[e.Status]++
		if running(e.Status) {
			n++
		}
		if e.Usage == nil || (e.Usage.RunSeconds == 0 && e.Usage.PeakMemoryBytes == 0) { // never ran: no series
			continue
		}
		u := e.Usage.Priced(c.rates)
		ch <- prometheus.MustNewConstMetric(runDesc, prometheus.CounterValue, u.RunSeconds, e.Key)
		ch <- prometheus.MustNewConstMetric(cpuDesc, prometheus.CounterValue, u.CPUSeconds, e.Key)
		ch <- prometheus.MustNewConstMetric(peakDesc, prometheus.GaugeValue, float64(u.PeakMemoryBytes), e.Key)
		if c.rates.Set() {
			ch <- prometheus.MustNewConstMetric(costDesc, prometheus.GaugeValue, u.Cost, e.Key, u.Currency)
		}
	}
	for _, s := range statuses {
		ch <- prometheus.MustNewConstMetric(envDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(n))
}
