// Package progress says an environment's changes for people, the same way
// wherever someone waits on a terminal (the CLI's redeploy and wake,
// previewd demo): one line per step (building, migrating, starting, then
// ready with its URL or failed with why), and, on a terminal, a spinner
// line with the current step and its elapsed time. What to print, and
// whether a change ends a wait, are pure functions; Printer only writes.
package progress

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/previewd/previewd/internal/env"
)

// Line is what to print for c, e.g.
//
//	building  pr-3           new commit a1b2c3d (was 9f8e7d6)
//	ready     pr-3           http://pr-3.localhost:8080  (feature/x @ a1b2c3d, took 1.4 s)
//	FAILED    pr-3           migrate: exit status 1
//	removed   pr-3
func Line(c env.Change) string {
	word := string(c.Status)
	detail := firstLine(c.Message)
	switch {
	case c.Removed:
		word = "removed"
	case c.Status == env.StatusFailed:
		word = "FAILED"
	case c.Status == env.StatusReady:
		detail = c.URL
		at := env.ShortSHA(c.SHA)
		if c.Branch != "" {
			at = c.Branch + " @ " + at
		}
		if c.TookMS > 0 {
			at += ", took " + Seconds(time.Duration(c.TookMS)*time.Millisecond)
		}
		if detail == "" {
			detail = firstLine(c.Message)
		}
		switch {
		case detail == "":
			detail = at
		case at != "":
			detail += "  (" + at + ")"
		}
	}
	if word == "" {
		word = "changed"
	}
	if detail == "" && !c.Removed {
		detail = env.ShortSHA(c.SHA)
	}
	return strings.TrimRight(fmt.Sprintf("  %-9s %-14s %s", word, c.Key, detail), " ")
}

// End reports whether c ends a wait for its environment to be deployed or
// woken, and whether it ended well: ready is the good end; failed,
// removed and sleeping (someone put it to sleep meanwhile) are bad ones;
// every other status (pending, queued, building, migrating, starting) is
// a step on the way.
func End(c env.Change) (done, ok bool) {
	switch {
	case c.Removed:
		return true, false
	case c.Status == env.StatusReady:
		return true, true
	case c.Status == env.StatusFailed, c.Status == env.StatusSleeping:
		return true, false
	}
	return false, false
}

// Expect reports whether asking for action ("redeploy" or "wake") of an
// environment in status s brings changes to wait for. A ready one does
// not change on either (previewd has nothing to do); a failed one wakes
// to nothing (it needs a redeploy); one being removed is not deployed.
func Expect(action string, s env.Status) bool {
	switch s {
	case env.StatusReady, env.StatusDeleting:
		return false
	case env.StatusFailed:
		return action == "redeploy"
	}
	return true
}

// Stale reports whether c, read from the event stream while waiting on
// an action, only repeats the state the environment had before the
// action (the action's own audit line, say): until a step of the action
// has been seen (started), such a change neither prints nor ends the
// wait, so a redeploy of a failed environment is not over at its first
// "failed".
func Stale(c, before env.Change, started bool) bool {
	return !started && !c.Removed && c.Key == before.Key && c.Status == before.Status && c.SHA == before.SHA && firstLine(c.Message) == firstLine(before.Message)
}

// Active reports whether c is a step in progress (what the spinner
// shows).
func Active(c env.Change) bool {
	if c.Removed {
		return false
	}
	switch c.Status {
	case env.StatusPending, env.StatusQueued, env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusDeleting:
		return true
	}
	return false
}

// spinner is the spinner's frames.
var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Spin is the spinner line for the steps in progress at now, at frame
// i, at most width characters: "⠹ pr-3 building 12 s · production starting 1 s".
func Spin(steps []env.Change, i int, now time.Time, width int) string {
	if len(steps) == 0 {
		return ""
	}
	parts := make([]string, 0, len(steps))
	for _, c := range steps {
		start := c.StepStartedAt
		if start.IsZero() {
			start = c.Time
		}
		s := c.Key + " " + string(c.Status)
		if !start.IsZero() && now.After(start) {
			s += " " + Seconds(now.Sub(start))
		}
		parts = append(parts, s)
	}
	line := spinner[i%len(spinner)] + " " + strings.Join(parts, " · ")
	if width > 1 && utf8.RuneCountInString(line) > width-1 {
		r := []rune(line)
		line = string(r[:width-2]) + "…"
	}
	return line
}

// Seconds says d for a step: "0.4 s", "12 s", "3 m 20 s".
func Seconds(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d m %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	return env.HumanDuration(d)
}

// FromEnvironment is the change an environment read from the API or
// the store shows (for a reader that polls).
func FromEnvironment(e env.Environment) env.Change {
	return env.Change{
		Key: e.Key, Kind: e.Kind, Number: e.Number, Branch: e.Branch, SHA: e.SHA,
		Status: e.Status, Message: e.Message, URL: e.URL,
		Time: e.UpdatedAt, StepStartedAt: e.UpdatedAt, Removed: e.DeletedAt != nil,
	}
}

// state is what makes a change worth a new line: its status, SHA and
// the first line of its message.
func state(c env.Change) string {
	return fmt.Sprint(c.Status, " ", c.SHA, " ", c.Removed, " ", firstLine(c.Message))
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(l)
}
