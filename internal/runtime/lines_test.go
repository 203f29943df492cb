package runtime

import (
	"errors"
	"io"
	goruntime "runtime"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/previewd/previewd/internal/env"
)

func TestReadLines(t *testing.T) {
	long := strings.Repeat("x", env.MaxLogLine)
	cutLong := strings.Repeat("x", env.MaxLogLine-len(ellipsis)) + ellipsis
	// A multi-byte rune across the cut is not split.
	euros := strings.Repeat("€", env.MaxLogLine) // 3 bytes each
	cutEuros := strings.Repeat("€", (env.MaxLogLine-len(ellipsis))/3) + ellipsis
	for name, tc := range map[string]struct {
		in   string
		want []string
	}{
		"empty":                  {"", nil},
		"lines":                  {"a\nb\n", []string{"a", "b"}},
		"last without newline":   {"a\nb", []string{"a", "b"}},
		"empty lines kept":       {"\n\na\n", []string{"", "", "a"}},
		"crlf":                   {"a\r\nb\r\n", []string{"a", "b"}},
		"inner cr kept":          {"10%\r20%\n", []string{"10%\r20%"}},
		"not utf-8":              {"caf\xe9 ok\n\xff\xfe\xfd\n", []string{"caf\uFFFD ok", "\uFFFD"}},
		"exactly max":            {long + "\n" + "next\n", []string{long, "next"}},
		"max with crlf":          {long + "\r\n", []string{long}},
		"one over":               {long + "y\nnext\n", []string{cutLong, "next"}},
		"long without newline":   {long + "yyyy", []string{cutLong}},
		"ten megabytes":          {strings.Repeat("z", 10<<20) + "\nafter\n", []string{strings.Repeat("z", env.MaxLogLine-len(ellipsis)) + ellipsis, "after"}},
		"runes across the cut":   {euros + "\n", []string{cutEuros}},
		"invalid grows past max": {strings.Repeat("\xff.", env.MaxLogLine/2) + "\n", []string{strings.Repeat("\uFFFD.", (env.MaxLogLine-len(ellipsis))/4) + ellipsis}},
	} {
		t.Run(name, func(t *testing.T) {
			// One byte per Read as well: the result does not depend on
			// how the input arrives.
			rs := []io.Reader{strings.NewReader(tc.in)}
			if len(tc.in) < 64<<10 {
				rs = append(rs, iotest.OneByteReader(strings.NewReader(tc.in)))
			}
			for _, r := range rs {
				var got []string
				if err := ReadLines(r, func(l string) error { got = append(got, l); return nil }); err != nil {
					t.Fatal(err)
				}
				if len(got) != len(tc.want) {
					t.Fatalf("got %d lines %.80q, want %d %.80q", len(got), got, len(tc.want), tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Errorf("line %d = %.60q… (%d bytes), want %.60q… (%d bytes)", i, got[i], len(got[i]), tc.want[i], len(tc.want[i]))
					}
					if !utf8.ValidString(got[i]) || len(got[i]) > env.MaxLogLine {
						t.Errorf("line %d is not safe: %d bytes, valid %v", i, len(got[i]), utf8.ValidString(got[i]))
					}
				}
			}
		})
	}
}

// TestReadLinesErrors: an error of the reader or of fn ends the reading
// and is returned; the line the reader's error cut short is not passed.
func TestReadLinesErrors(t *testing.T) {
	boom := errors.New("boom")
	var got []string
	err := ReadLines(io.MultiReader(strings.NewReader("a\npartial"), iotest.ErrReader(boom)), func(l string) error { got = append(got, l); return nil })
	if !errors.Is(err, boom) || len(got) != 1 || got[0] != "a" {
		t.Errorf("reader error: %v, lines %q; want boom after [a]", err, got)
	}
	stop := errors.New("stop")
	n := 0
	err = ReadLines(strings.NewReader("a\nb\nc\n"), func(string) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn error: %v after %d lines; want stop after 1", err, n)
	}
}

// TestReadLinesMemory: a 10 MB line costs ReadLines its buffers, not
// 10 MB.
func TestReadLinesMemory(t *testing.T) {
	r := io.MultiReader(strings.NewReader("start\n"), io.LimitReader(repeatReader('q'), 10<<20), strings.NewReader("\nend\n"))
	n := 0
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	if err := ReadLines(r, func(string) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	goruntime.ReadMemStats(&after)
	if n != 3 {
		t.Errorf("%d lines, want 3", n)
	}
	// TotalAlloc counts every goroutine's allocations: 1 MiB leaves room
	// for the test runner's own.
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Errorf("reading a 10 MB line allocated %d bytes", d)
	}
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}
