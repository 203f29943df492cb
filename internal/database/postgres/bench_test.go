package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
)

// migration is a small migration like the example app's: one table.
const migration = `CREATE TABLE documents (
	id bigserial PRIMARY KEY,
	title text NOT NULL,
	body text NOT NULL DEFAULT '',
	updated_at timestamptz NOT NULL DEFAULT now())`

// reportMedian reports the median of ds in milliseconds as unit.
func reportMedian(b *testing.B, ds []time.Duration, unit string) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2])/float64(time.Millisecond), unit)
}

// migrate connects as the environment's role and runs the migration.
func migrate(ctx context.Context, b *testing.B, url string) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, migration); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkEnsureSchema measures provisioning in schema mode: role, schema,
// grants in one transaction (ms-provision), and that plus connecting as the
// role and running a one-table migration (ms-provision+migrate, the goal's
// measure: 25 ms median).
func BenchmarkEnsureSchema(b *testing.B) {
	f := setup(b)
	p := f.provider(f.cfg(IsolationSchema))
	var prov, total []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := key("bench-e")
		start := time.Now()
		c, err := p.Ensure(f.ctx, database.Target{Key: k})
		if err != nil {
			b.Fatal(err)
		}
		prov = append(prov, time.Since(start))
		migrate(f.ctx, b, c.Vars["DATABASE_URL"])
		total = append(total, time.Since(start))
		b.StopTimer()
		if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportMedian(b, prov, "ms-provision")
	reportMedian(b, total, "ms-provision+migrate")
}

// BenchmarkDropSchema measures teardown in schema mode of an environment
// with a table (goal: 20 ms).
func BenchmarkDropSchema(b *testing.B) {
	f := setup(b)
	p := f.provider(f.cfg(IsolationSchema))
	var ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		k := key("bench-d")
		c, err := p.Ensure(f.ctx, database.Target{Key: k})
		if err != nil {
			b.Fatal(err)
		}
		migrate(f.ctx, b, c.Vars["DATABASE_URL"])
		items := p.Items(database.Target{Key: k})
		b.StartTimer()
		start := time.Now()
		if err := p.Drop(f.ctx, items); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	reportMedian(b, ds, "ms-median")
}

// BenchmarkCloneTemplate200k measures Ensure in database mode from a
// template holding 200,000 rows (goal: 300 ms): role, CREATE DATABASE,
// taking ownership of the cloned objects, revoking PUBLIC and marking.
// The sub-benchmarks compare CREATE DATABASE's strategies.
func BenchmarkCloneTemplate200k(b *testing.B) {
	f := setup(b)
	tpl := f.c.NewDatabase(b)
	if err := f.c.Exec(f.ctx, tpl, `CREATE TABLE documents AS
		SELECT g AS id, 'title ' || g AS title, md5(g::text) || md5((g + 1)::text) AS body, now() AS updated_at
		FROM generate_series(1, 200000) g;
		ALTER TABLE documents ADD PRIMARY KEY (id)`); err != nil {
		b.Fatal(err)
	}
	for _, sql := range []string{"VACUUM ANALYZE documents", "CHECKPOINT"} {
		if err := f.c.Exec(f.ctx, tpl, sql); err != nil {
			b.Fatal(err)
		}
	}
	for _, strategy := range []string{"FILE_COPY", "WAL_LOG"} {
		b.Run(strategy, func(b *testing.B) {
			cfg := f.cfg(IsolationDatabase)
			cfg.Template = tpl
			p := f.provider(cfg)
			p.strategy = strategy
			var ds []time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := key("bench-c")
				start := time.Now()
				c, err := p.Ensure(f.ctx, database.Target{Key: k})
				if err != nil {
					b.Fatal(err)
				}
				ds = append(ds, time.Since(start))
				b.StopTimer()
				if i == 0 {
					conn, err := pgx.Connect(f.ctx, c.Vars["DATABASE_URL"])
					if err != nil {
						b.Fatal(err)
					}
					var n int64
					if err := conn.QueryRow(f.ctx, "SELECT count(*) FROM documents").Scan(&n); err != nil || n != 200000 {
						b.Fatalf("clone has %d rows: %v", n, err)
					}
					conn.Close(f.ctx)
				}
				if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportMedian(b, ds, "ms-median")
		})
	}
}
