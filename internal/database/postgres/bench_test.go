package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/previewd/previewd/internal/database"
	"github.com/previewd/previewd/internal/pgtest"
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
	tpl := f.documents200k(b)
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

// BenchmarkCloneTemplate1GB measures cloning a template of about 1 GiB
// with CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY (as database
// isolation does), on a cluster of its own with fsync on (the shared test
// cluster runs with fsync off, which would make the clone skip its
// syncs), against the disk's own copy rate measured in the same run:
// io.Copy of a file of the template's size in the benchmark's temp dir
// (same filesystem as the cluster), then fsync. It reports the clone's
// seconds (goal: 5 s), the template's MB, the disk's MB/s and
// clone/disk-copy, the ratio of the clone's time to the plain copy's.
// Heavy: run it once, -benchtime=1x.
func BenchmarkCloneTemplate1GB(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c, err := pgtest.Start(ctx, pgtest.Options{NoBouncer: true, Settings: map[string]string{
		"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on",
		// Only so that building the template writes no WAL.
		"wal_level": "minimal", "max_wal_senders": "0",
	}})
	if err != nil {
		pgtest.SkipOrFatal(b, err)
	}
	defer c.Close()
	tpl := "bench_tpl_1gb"
	if err := c.CreateDatabase(ctx, tpl); err != nil {
		b.Fatal(err)
	}
	// 1.1 M rows of about 1 KB (960 bytes of text, below the TOAST
	// threshold, so not compressed): about 1.1 GB with the index.
	if err := c.Exec(ctx, tpl, `BEGIN;
		CREATE TABLE documents (id int, body text);
		INSERT INTO documents SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 1100000) g;
		ALTER TABLE documents ADD PRIMARY KEY (id);
		COMMIT`); err != nil {
		b.Fatal(err)
	}
	for _, sql := range []string{"VACUUM ANALYZE documents", "CHECKPOINT"} {
		if err := c.Exec(ctx, tpl, sql); err != nil {
			b.Fatal(err)
		}
	}
	var size int64
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, "SELECT pg_database_size($1)", tpl).Scan(&size); err != nil {
		b.Fatal(err)
	}
	syscall.Sync()

	diskCopy := copyRate(b, size)
	var clones []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench_clone_%d", i)
		start := time.Now()
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(tpl)+" STRATEGY FILE_COPY"); err != nil {
			b.Fatal(err)
		}
		clones = append(clones, time.Since(start))
		b.StopTimer()
		var n int64
		cc, err := c.Connect(ctx, name)
		if err != nil {
			b.Fatal(err)
		}
		if err := cc.QueryRow(ctx, "SELECT count(*) FROM documents").Scan(&n); err != nil || n != 1100000 {
			b.Fatalf("clone has %d rows: %v", n, err)
		}
		cc.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident(name)); err != nil {
			b.Fatal(err)
		}
		syscall.Sync()
		b.StartTimer()
	}
	slices.Sort(clones)
	clone := clones[len(clones)/2]
	b.ReportMetric(clone.Seconds(), "s-clone")
	b.ReportMetric(float64(size)/1e6, "MB-template")
	b.ReportMetric(float64(size)/1e6/diskCopy.Seconds(), "MB/s-disk-copy")
	b.ReportMetric(clone.Seconds()/diskCopy.Seconds(), "clone/disk-copy")
}

// copyRate writes a file of size bytes (not all the same, synced), then
// times copying it to another file with io.Copy and fsync.
func copyRate(b *testing.B, size int64) time.Duration {
	dir := b.TempDir()
	src := filepath.Join(dir, "src")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i*7 + i/251)
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		binary.LittleEndian.PutUint64(buf, uint64(n))
		if _, err := f.Write(buf[:min(int64(len(buf)), size-n)]); err != nil {
			b.Fatal(err)
		}
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		b.Fatal(err)
	}
	syscall.Sync()
	start := time.Now()
	in, err := os.Open(src)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(filepath.Join(dir, "dst"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		b.Fatal(err)
	}
	if err := errors.Join(out.Sync(), out.Close()); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkRehearsal200k measures what the migration rehearsal adds to a
// rollout: Rehearse on a template of 200,000 rows (clone, ownership,
// catalog snapshots, pg_stat_statements, sampling, the drop) with a
// one-statement migration (ALTER TABLE … ADD COLUMN, no rewrite). Goal
// 1.5 s. It reports the median of the whole call and of the migration
// alone.
func BenchmarkRehearsal200k(b *testing.B) {
	f := setup(b)
	tpl := f.documents200k(b)
	cfg := f.cfg(IsolationDatabase)
	cfg.Template = tpl
	p := f.provider(cfg)
	var total, mig []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		k := key("bench-rh")
		if _, err := p.Ensure(f.ctx, database.Target{Key: k}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		var took time.Duration
		rep, err := p.Rehearse(f.ctx, database.Target{Key: k}, database.RehearseOptions{LockTimeout: 5 * time.Second},
			func(ctx context.Context, c database.Conn) error {
				s := time.Now()
				conn, err := pgx.Connect(ctx, c.Vars["DATABASE_URL"])
				if err != nil {
					return err
				}
				defer conn.Close(context.Background())
				_, err = conn.Exec(ctx, "ALTER TABLE documents ADD COLUMN archived boolean")
				took = time.Since(s)
				return err
			})
		if err != nil || rep.Error != "" {
			b.Fatalf("rehearsal: %v %s", err, rep.Error)
		}
		total = append(total, time.Since(start))
		mig = append(mig, took)
		b.StopTimer()
		if i == 0 && (len(rep.Tables) != 1 || rep.Tables[0].Rows != 200000) {
			b.Fatalf("report %+v", rep)
		}
		if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportMedian(b, total, "ms-median")
	reportMedian(b, mig, "migrate-ms-median")
}

// documents200k makes a template of 200,000 documents (about 40 MB),
// analyzed and checkpointed, and returns its name.
func (f *fixture) documents200k(b *testing.B) string {
	b.Helper()
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
	return tpl
}
