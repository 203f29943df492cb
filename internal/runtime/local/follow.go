package local

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

var _ runtime.Follower = (*Runtime)(nil)

// followPoll is how often a followed log that has nothing more to read is
// looked at again (its size, and whether it is still the environment's).
const followPoll = 150 * time.Millisecond

// Follow sends the last n lines of the environment's log, then each line
// written to it, to lines, each tagged with the step (build, migrate,
// run) of the latest header line before it (see step and start), as
// runtime.ReadLines makes it safe. It ends, returning nil, when ctx is
// done or when the log goes: removed (the environment was torn down) or
// replaced by another file. A log cut shorter is read again from its
// start. It wraps runtime.ErrNoLogs when the environment has written
// nothing yet.
func (r *Runtime) Follow(ctx context.Context, key string, n int, lines chan<- env.LogLine) error {
	path := r.logPath(key)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s has written no output yet: %w", key, runtime.ErrNoLogs)
	} else if err != nil {
		return fmt.Errorf("reading the log of %s: %w", key, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading the log of %s: %w", key, err)
	}
	off, step, err := tailStart(f, st.Size(), n)
	if err != nil {
		return fmt.Errorf("reading the log of %s: %w", key, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("reading the log of %s: %w", key, err)
	}
	fr := &followReader{ctx: ctx, f: f, path: path, st: st, pos: off, poll: followPoll}
	err = runtime.ReadLines(fr, func(text string) error {
		if s, ok := headerStep(text); ok {
			step = s
		}
		select {
		case lines <- env.LogLine{Step: step, Text: text}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("following the log of %s: %w", key, err)
	}
	return nil
}

// header matches the line step and start write before each step's
// output: "==> build 1a2b3c4 at 2026-01-02T03:04:05Z: make",
// "==> run 1a2b3c4 on port 4312 at 2026-01-02T03:04:05Z: ./app",
// "==> cache node_modules 1a2b3c4 at 2026-01-02T03:04:05Z: npm ci".
var header = regexp.MustCompile(`^==> (build|migrate|rehearse|run|cache \S+) \S* ?(?:on port \d+ )?at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: `)

// headerStep returns the step whose output line begins, if it is a
// header line.
func headerStep(line string) (string, bool) {
	m := header.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// defaultStep tags lines with no header line before them (within
// maxStepScan): the app's output is what runs longest.
const defaultStep = "run"

// maxStepScan bounds how far before the last n lines tailStart looks for
// the header line that tags them.
const maxStepScan = 16 << 20

// tailStart returns where the last n lines of the first size bytes of f
// begin (a last line without "\n" counts; with n <= 0, only that one),
// and the step of the latest header line before there.
func tailStart(f io.ReaderAt, size int64, n int) (int64, string, error) {
	if size == 0 {
		return 0, defaultStep, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, "", err
	}
	k := max(n, 0)
	if k == 0 && last[0] != '\n' {
		k = 1
	}
	off := size
	if k > 0 {
		off = 0 // unless there are k lines
	}
	seen := 0
	step := defaultStep
	err := lineStarts(f, size, func(start int64, head []byte) bool {
		if seen < k {
			seen++
			if seen == k {
				off = start
			}
			return true
		}
		if off-start > maxStepScan {
			return false
		}
		if !bytes.HasPrefix(head, []byte("==> ")) {
			return true
		}
		if i := bytes.IndexByte(head, '\n'); i >= 0 {
			head = head[:i]
		}
		s, ok := headerStep(string(head))
		if ok {
			step = s
		}
		return !ok
	})
	return off, step, err
}

// headLen is how much of a line lineStarts gives: enough for a header
// line's step and time.
const headLen = 128

// lineStarts calls fn with the offset of each line in the first size
// bytes of f, the last line first, and up to headLen bytes from there,
// until fn returns false. It reads f backwards, 32 KiB at a time.
func lineStarts(f io.ReaderAt, size int64, fn func(start int64, head []byte) bool) error {
	const chunk = 32 << 10
	buf := make([]byte, chunk)
	var next []byte // the first headLen bytes after the chunk in buf
	for end := size; end > 0; {
		begin := max(0, end-chunk)
		b := buf[:end-begin]
		if n, err := f.ReadAt(b, begin); n < len(b) {
			return fmt.Errorf("reading at %d: %w", begin, cmp.Or(err, io.ErrUnexpectedEOF))
		}
		for i := len(b) - 1; i >= -1; i-- {
			var start int64
			switch {
			case i == -1 && begin == 0:
				start = 0
			case i >= 0 && b[i] == '\n' && begin+int64(i)+1 < size:
				start = begin + int64(i) + 1
			default:
				continue
			}
			if !fn(start, headOf(b[i+1:], next)) {
				return nil
			}
		}
		next = headOf(b, next)
		end = begin
	}
	return nil
}

// headOf returns the first headLen bytes of a followed by b, in memory of
// its own when it is not all in a.
func headOf(a, b []byte) []byte {
	if len(a) >= headLen {
		return a[:headLen]
	}
	h := make([]byte, 0, headLen)
	h = append(h, a...)
	return append(h, b[:min(len(b), headLen-len(a))]...)
}

// followReader reads a log file and, at its end, waits for more: it
// looks every poll at whether the file grew, was cut shorter (it then
// reads again from the start) or is no longer at path (its end, io.EOF).
// It returns ctx's error once ctx is done.
type followReader struct {
	ctx  context.Context
	f    *os.File
	path string
	st   os.FileInfo
	pos  int64
	poll time.Duration
}

func (fr *followReader) Read(p []byte) (int, error) {
	for {
		if err := fr.ctx.Err(); err != nil {
			return 0, err
		}
		n, err := fr.f.Read(p)
		fr.pos += int64(n)
		if n > 0 {
			return n, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if err := fr.wait(); err != nil {
			return 0, err
		}
	}
}

// wait waits one poll, then sees what became of the file.
func (fr *followReader) wait() error {
	t := time.NewTimer(fr.poll)
	defer t.Stop()
	select {
	case <-fr.ctx.Done():
		return fr.ctx.Err()
	case <-t.C:
	}
	st, err := os.Stat(fr.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return io.EOF
	case err != nil:
		return err
	case !os.SameFile(st, fr.st):
		return io.EOF
	}
	if cur, err := fr.f.Stat(); err == nil && cur.Size() < fr.pos {
		if _, err := fr.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		fr.pos = 0
	}
	return nil
}
