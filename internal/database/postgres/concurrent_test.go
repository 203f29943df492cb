package postgres

import (
	"fmt"
	"sync"
	"testing"

	"github.com/previewd/previewd/internal/database"
)

// TestConcurrent runs Ensure for several keys at once, twice per key, then
// Drop for all at once: Ensures of one key wait for each other (advisory
// lock), and Ensures and Drops of different keys do not trip over the
// shared catalog rows they update (GRANT/REVOKE on the database).
func TestConcurrent(t *testing.T) {
	for _, iso := range []string{IsolationSchema, IsolationDatabase} {
		t.Run(iso, func(t *testing.T) {
			f := setup(t)
			o := f.cfg(iso)
			o.MaxConns = 16
			p := f.provider(o)
			const keys, dup = 5, 2
			ks := make([]string, keys)
			for i := range ks {
				ks[i] = key("conc")
			}
			urls := make([][]string, keys)
			var mu sync.Mutex
			var wg sync.WaitGroup
			errs := make(chan error, keys*dup)
			for i := range ks {
				for range dup {
					wg.Add(1)
					go func() {
						defer wg.Done()
						c, err := p.Ensure(f.ctx, database.Target{Key: ks[i]})
						if err != nil {
							errs <- fmt.Errorf("Ensure(%s): %w", ks[i], err)
							return
						}
						mu.Lock()
						urls[i] = append(urls[i], c.Vars["DATABASE_URL"])
						mu.Unlock()
					}()
				}
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}
			for i, u := range urls {
				if len(u) != dup || u[0] != u[1] {
					t.Errorf("key %s: URLs differ", ks[i])
				}
				conn := connect(f.ctx, t, u[0])
				if code := sqlState(f.ctx, conn, "CREATE TABLE t (id int)"); code != "" {
					t.Errorf("key %s: %s", ks[i], code)
				}
				conn.Close(f.ctx)
			}
			errs = make(chan error, keys)
			for _, k := range ks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := p.Drop(f.ctx, p.Items(database.Target{Key: k})); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for _, k := range ks {
				if s := f.state(mustName(t, k), k); s != "" {
					t.Errorf("%s left after Drop: %s", k, s)
				}
			}
			f.checkProduction()
		})
	}
}
