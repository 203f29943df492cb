package runtime

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/previewd/previewd/internal/env"
)

// ReadLines calls fn with each line read from r, made safe to show by
// SafeLine. Whatever a line's length, ReadLines holds at most
// env.MaxLogLine bytes of it and a 16 KiB read buffer: the rest of a
// longer line is read and dropped. A last line without "\n" is passed
// too. It returns nil at the end of r, else the first error of r or fn
// (a line cut short by an error of r is not passed).
func ReadLines(r io.Reader, fn func(line string) error) error {
	br := bufio.NewReaderSize(r, 16<<10)
	line := make([]byte, 0, env.MaxLogLine)
	cut := false
	for {
		chunk, err := br.ReadSlice('\n')
		end := err == nil // chunk ends with the line's "\n"
		if end {
			chunk = bytes.TrimSuffix(chunk[:len(chunk)-1], []byte("\r"))
		}
		if room := env.MaxLogLine - len(line); len(chunk) > room {
			chunk, cut = chunk[:room], true
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if end || (errors.Is(err, io.EOF) && (len(line) > 0 || cut)) {
			if ferr := fn(SafeLine(line, cut)); ferr != nil {
				return ferr
			}
			line, cut = line[:0], false
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ellipsis ends a line that was cut.
const ellipsis = "…"

// SafeLine returns raw, one line without its "\n", as text that is safe
// to show: a trailing "\r" removed, each run of bytes that is not UTF-8
// replaced by one U+FFFD, and at most env.MaxLogLine bytes, ending in "…"
// when it is longer or when cut says raw is only the start of the line.
func SafeLine(raw []byte, cut bool) string {
	if !cut {
		raw = bytes.TrimSuffix(raw, []byte("\r"))
	}
	s := string(raw)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if !cut && len(s) <= env.MaxLogLine {
		return s
	}
	i := min(len(s), env.MaxLogLine-len(ellipsis))
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + ellipsis
}
