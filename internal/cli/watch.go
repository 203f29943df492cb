package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/client"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/progress"
)

// pollEvery is how often the environment is read again when the server
// has no event stream.
const pollEvery = 250 * time.Millisecond

// ended is a change that ends the wait.
type ended struct {
	c  env.Change
	ok bool
}

func (e *ended) Error() string { return "ended at " + string(e.c.Status) }

// waitFor asks for action on key (act) and shows the steps on w, from
// previewd's event stream (read again by polling from a previewd without
// one), until the environment is ready (nil) or fails (an error saying
// why, with the message's log tail, or the log's, printed on w), at
// most timeout. It returns act's answer once it was given.
//
// It connects to the stream before it acts, so no step is missed. An
// action that changes nothing (a redeploy or wake of a ready
// environment, see progress.Expect) is asked and the state shown at once.
func waitFor(ctx context.Context, c *client.Client, key, action string, timeout time.Duration, w io.Writer, act func(context.Context) (client.Answer, error)) (*client.Answer, error) {
	before, err := c.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	tty, width := isTerminal(w)
	p := progress.NewPrinter(w, tty)
	if width > 0 {
		p.Width = width
	}
	defer p.Stop()
	var ans *client.Answer
	say := func() {
		s := action + " of " + key + " accepted"
		if ans.Note != "" {
			s += " (" + ans.Note + ")"
		}
		p.Printf("%s\n", s)
	}
	if !progress.Expect(action, before.Status) {
		a, err := act(ctx)
		if err != nil {
			return nil, err
		}
		ans = &a
		say()
		p.Change(progress.FromEnvironment(before.Environment))
		if before.Status == env.StatusFailed {
			return ans, fmt.Errorf("%s failed; a wake does not deploy it again: previewd redeploy %s", key, key)
		}
		return ans, nil
	}

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if tty {
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-wctx.Done():
					return
				case <-t.C:
					p.Tick()
				}
			}
		}()
	}
	doAct := func() error {
		if ans != nil {
			return nil
		}
		a, err := act(wctx)
		if err != nil {
			return err
		}
		ans = &a
		say()
		return nil
	}
	feed := func(ch env.Change) error {
		p.Change(ch)
		if done, ok := progress.End(ch); done {
			return &ended{ch, ok}
		}
		return nil
	}
	// fresh reports whether a read shows a change since before (a read
	// right after the action may still show the old failure).
	fresh := func(e client.Environment) bool {
		return !e.UpdatedAt.Equal(before.UpdatedAt) || e.Status != before.Status || e.SHA != before.SHA
	}
	reread := func() error {
		e, err := c.Get(wctx, key)
		switch {
		case errNotFound(err):
			return feed(env.Change{Key: key, Status: env.StatusDeleting, Removed: true})
		case err != nil:
			return err
		case fresh(e):
			return feed(progress.FromEnvironment(e.Environment))
		}
		return nil
	}
	start := progress.FromEnvironment(before.Environment)
	started := false
	connected := 0
	err = c.Events(wctx, 0, func(ev client.Event) error {
		switch ev.Type {
		case client.Connected:
			connected++
			if connected == 1 {
				return doAct()
			}
			return reread() // what changed while it was away
		case client.Reset:
			return reread()
		case client.Changed:
			if ev.Change.Key != key || progress.Stale(ev.Change, start, started) {
				return nil
			}
			started = started || progress.Active(ev.Change)
			return feed(ev.Change)
		}
		return nil
	})
	if errors.Is(err, client.ErrNoStream) {
		err = poll(wctx, doAct, reread)
	}
	var end *ended
	switch {
	case errors.As(err, &end):
		if end.ok {
			return ans, nil
		}
		p.Stop()
		return ans, failure(ctx, c, w, end.c)
	case err != nil:
		return ans, err
	case ctx.Err() != nil:
		return ans, fmt.Errorf("stopped waiting; previewd goes on (previewd get %s)", key)
	case wctx.Err() != nil:
		return ans, fmt.Errorf("%s is not ready after %s; previewd goes on (previewd get %s)", key, timeout, key)
	}
	return ans, nil
}

// poll acts, then reads the environment again until reread ends the wait
// or ctx ends (nil).
func poll(ctx context.Context, act, reread func() error) error {
	if err := act(); err != nil {
		return err
	}
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := reread(); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// failure prints why ch ended the wait badly (the rest of its message,
// the log tail, or else the log's last lines) and returns the error
// saying so.
func failure(ctx context.Context, c *client.Client, w io.Writer, ch env.Change) error {
	switch {
	case ch.Removed:
		return fmt.Errorf("%s was removed", ch.Key)
	case ch.Status == env.StatusSleeping:
		return fmt.Errorf("%s was put to sleep meanwhile", ch.Key)
	}
	first, rest, _ := strings.Cut(strings.TrimSpace(ch.Message), "\n")
	if rest = strings.TrimSpace(rest); rest == "" {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if s, err := c.Logs(ctx, ch.Key, 20); err == nil {
			rest = strings.TrimSpace(s)
		}
	}
	if rest != "" {
		for _, l := range strings.Split(rest, "\n") {
			fmt.Fprintln(w, "    "+l)
		}
	}
	if first == "" {
		first = "failed"
	}
	return fmt.Errorf("%s failed: %s", ch.Key, first)
}
