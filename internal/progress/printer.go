package progress

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Printer writes the lines of changes to w, each change once (a change
// that says what the last one of its key said is not repeated). On a
// terminal (TTY) it keeps a spinner line below them with the steps in
// progress, which Tick redraws; elsewhere it writes plain lines only. It
// is safe for concurrent use.
type Printer struct {
	w   io.Writer
	tty bool
	// Width is the terminal's width, for the spinner line (default 80).
	Width int
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu     sync.Mutex
	last   map[string]string
	active map[string]env.Change
	frame  int
	shown  bool // the spinner line is on screen
	// stopped: Stop was called; no spinner line is drawn again.
	stopped bool
}

// NewPrinter returns a printer writing to w; tty says whether w is a
// terminal.
func NewPrinter(w io.Writer, tty bool) *Printer {
	return &Printer{w: w, tty: tty, Width: 80, Now: time.Now, last: map[string]string{}, active: map[string]env.Change{}}
}

// Change prints c's line unless its key's last change said the same, and
// reports whether it printed.
func (p *Printer) Change(c env.Change) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if Active(c) {
		p.active[c.Key] = c
	} else {
		delete(p.active, c.Key)
	}
	s := state(c)
	if p.last[c.Key] == s {
		p.redraw()
		return false
	}
	p.last[c.Key] = s
	if c.Removed {
		delete(p.last, c.Key)
	}
	p.clear()
	fmt.Fprintln(p.w, Line(c))
	p.redraw()
	return true
}

// Printf prints a line of its own (above the spinner line).
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
	fmt.Fprintf(p.w, format, args...)
	p.redraw()
}

// Tick advances the spinner (on a terminal; otherwise it does nothing).
func (p *Printer) Tick() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frame++
	p.redraw()
}

// Stop clears the spinner line for good (lines are still printed).
func (p *Printer) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.clear()
}

func (p *Printer) clear() {
	if p.shown {
		io.WriteString(p.w, "\r\033[K")
		p.shown = false
	}
}

func (p *Printer) redraw() {
	if !p.tty || p.stopped {
		return
	}
	p.clear()
	steps := make([]env.Change, 0, len(p.active))
	for _, c := range p.active {
		steps = append(steps, c)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].Key < steps[j].Key })
	if line := Spin(steps, p.frame, p.Now(), p.Width); line != "" {
		io.WriteString(p.w, line)
		p.shown = true
	}
}
