package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// materializeFixture makes a tree shaped like a node_modules: 400
// packages of 5 directories with 10 files each (20,000 files, 2,400
// directories), files of 256 B to 16 KiB (about 78 MiB).
func materializeFixture(b *testing.B, root string) (files int, bytes int64) {
	b.Helper()
	buf := make([]byte, 16<<10)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	for p := 0; p < 400; p++ {
		for d := 0; d < 5; d++ {
			dir := filepath.Join(root, "pkg-"+strconv.Itoa(p), "dir-"+strconv.Itoa(d))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			for f := 0; f < 10; f++ {
				size := 256 << ((p + d + f) % 7) // 256 B … 16 KiB
				if err := os.WriteFile(filepath.Join(dir, "f"+strconv.Itoa(f)+".js"), buf[:size], 0o444); err != nil {
					b.Fatal(err)
				}
				files++
				bytes += int64(size)
			}
		}
	}
	return files, bytes
}

// BenchmarkMaterialize puts a cache entry of 20,000 files (a
// node_modules) into a fresh checkout by each method: hard links (what
// share: link does where there are no reflinks), reflinks (skipped where
// the filesystem has none: ext4, tmpfs), a copy (copy_file_range), and one
// symbolic link. Removing the result is not timed.
//
//	go test -run '^$' -bench Materialize -benchtime 5x ./internal/runtime/local/
func BenchmarkMaterialize(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "entry")
	files, size := materializeFixture(b, src)
	b.Logf("entry: %d files, %.1f MiB", files, float64(size)/(1<<20))
	for _, method := range []string{shareHard, shareReflink, shareCopy, shareSymlink} {
		b.Run(method, func(b *testing.B) {
			if method == shareReflink {
				probe := filepath.Join(dir, "probe")
				err := cloneFile(filepath.Join(src, "pkg-0", "dir-0", "f0.js"), probe, 0o644)
				os.Remove(probe)
				if errors.Is(err, errNoReflink) {
					b.Skip("this filesystem has no reflinks")
				}
			}
			for i := 0; i < b.N; i++ {
				dst := filepath.Join(dir, fmt.Sprintf("checkout-%s-%d", method, i), "node_modules")
				if err := materialize(src, dst, method); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := removeTree(filepath.Dir(dst)); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/entry")
		})
	}
}
