package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/store"
)

// withUsage is the real store with usage filled in per key, as the store
// will fill it.
type withUsage struct {
	*store.Store
	usage map[string]env.Usage
}

func (w withUsage) Live(ctx context.Context) ([]env.Environment, error) {
	live, err := w.Store.Live(ctx)
	for i := range live {
		if u, ok := w.usage[live[i].Key]; ok {
			live[i].Usage = &u
		}
	}
	return live, err
}

// TestEnvMetrics: a scrape reads the store: environments by status,
// queued and sleeping included, the running count (production counts,
// sleeping and queued do not), and each environment's usage, priced only
// when rates are set.
func TestEnvMetrics(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for key, s := range map[string]env.Status{
		env.ProductionKey: env.StatusReady, "pr-1": env.StatusQueued, "pr-2": env.StatusSleeping,
		"pr-3": env.StatusReady, "pr-4": env.StatusBuilding, "pr-5": env.StatusQueued,
	} {
		kind := env.KindPullRequest
		if key == env.ProductionKey {
			kind = env.KindProduction
		}
		if err := st.Upsert(ctx, env.Source{Key: key, Kind: kind, Branch: key}); err != nil {
			t.Fatal(err)
		}
		if err := st.Set(ctx, key, store.Update{Status: &s}); err != nil {
			t.Fatal(err)
		}
	}
	src := withUsage{st, map[string]env.Usage{
		"pr-2": {RunSeconds: 7200, CPUSeconds: 1800, GBSeconds: 1800, PeakMemoryBytes: 180e6},
		"pr-3": {RunSeconds: 3600, CPUSeconds: 900, PeakMemoryBytes: 2e6},
	}}
	counts := `
# HELP previewd_environments Live environments, by status.
# TYPE previewd_environments gauge
previewd_environments{status="building"} 1
previewd_environments{status="deleting"} 0
previewd_environments{status="failed"} 0
previewd_environments{status="migrating"} 0
previewd_environments{status="pending"} 0
previewd_environments{status="queued"} 2
previewd_environments{status="ready"} 2
previewd_environments{status="sleeping"} 1
previewd_environments{status="starting"} 0
# HELP previewd_environments_running Live environments holding a running slot (building, migrating, starting or ready), production included.
# TYPE previewd_environments_running gauge
previewd_environments_running 3
`
	usage := `
# HELP previewd_environment_cpu_seconds_total CPU time the environment has used (requested, on Kubernetes).
# TYPE previewd_environment_cpu_seconds_total counter
previewd_environment_cpu_seconds_total{env="pr-2"} 1800
previewd_environment_cpu_seconds_total{env="pr-3"} 900
# HELP previewd_environment_memory_peak_bytes The environment's peak memory (requested, on Kubernetes).
# TYPE previewd_environment_memory_peak_bytes gauge
previewd_environment_memory_peak_bytes{env="pr-2"} 1.8e+08
previewd_environment_memory_peak_bytes{env="pr-3"} 2e+06
# HELP previewd_environment_run_seconds_total Time the environment has run, since its usage began.
# TYPE previewd_environment_run_seconds_total counter
previewd_environment_run_seconds_total{env="pr-2"} 7200
previewd_environment_run_seconds_total{env="pr-3"} 3600
`
	// pr-2: 0.5 CPU-h at 0.25 + 0.5 GB-h at 0.5; pr-3: 0.25 CPU-h.
	cost := `
# HELP previewd_environment_cost What the environment's usage costs at lifecycle.cost's rates.
# TYPE previewd_environment_cost gauge
previewd_environment_cost{currency="EUR",env="pr-2"} 0.375
previewd_environment_cost{currency="EUR",env="pr-3"} 0.0625
`
	names := []string{"previewd_environments", "previewd_environments_running", "previewd_environment_run_seconds_total",
		"previewd_environment_cpu_seconds_total", "previewd_environment_memory_peak_bytes", "previewd_environment_cost"}
	tests := map[string]struct {
		src   liveLister
		rates env.Rates
		want  string
	}{
		"the store as it is":   {st, env.Rates{}, counts},
		"usage without rates":  {src, env.Rates{}, counts + usage},
		"usage, priced in EUR": {src, env.Rates{CPUHour: 0.25, GBHour: 0.5, Currency: "EUR"}, counts + usage + cost},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			newMetrics(ctx, reg, tt.src, tt.rates, slog.New(slog.DiscardHandler))
			if got, want := scrape(t, reg, names), samples(tt.want); !slices.Equal(got, want) {
				t.Errorf("scraped\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// scrape GETs /metrics as Prometheus does and returns the lines of the
// metrics named (with their HELP and TYPE), sorted.
func scrape(t *testing.T, reg *prometheus.Registry, names []string) []string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("scrape: %d %v %s", resp.StatusCode, err, b)
	}
	var out []string
	for _, line := range samples(string(b)) {
		f := strings.Fields(strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE "))
		name, _, _ := strings.Cut(f[0], "{")
		if slices.Contains(names, name) {
			out = append(out, line)
		}
	}
	return out
}

// samples are the non-empty lines of an exposition, sorted.
func samples(text string) []string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}
