package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Phase is where an environment is, for people.
type Phase string

// The phases a notice can show.
const (
	PhaseWaiting   Phase = "waiting"
	PhaseBuilding  Phase = "building"
	PhaseMigrating Phase = "migrating"
	PhaseStarting  Phase = "starting"
	PhaseReady     Phase = "ready"
	PhaseFailed    Phase = "failed"
	PhaseRemoving  Phase = "removing"
	PhaseRemoved   Phase = "removed"
	// PhaseRetrying: removal failed in part and is being retried.
	PhaseRetrying Phase = "retrying"
	// PhaseQueued: waiting for a running slot (lifecycle.maxRunning).
	PhaseQueued Phase = "queued"
	// PhaseSleeping: stopped after lifecycle.sleepAfter without
	// activity; the next visit wakes it.
	PhaseSleeping Phase = "sleeping"
)

// PhaseOf returns the phase a notice reports.
func PhaseOf(n env.Notice) Phase {
	switch {
	case len(n.Left) > 0:
		return PhaseRetrying
	case n.Env.DeletedAt != nil:
		return PhaseRemoved
	}
	switch n.Env.Status {
	case env.StatusPending:
		return PhaseWaiting
	case env.StatusBuilding:
		return PhaseBuilding
	case env.StatusMigrating:
		return PhaseMigrating
	case env.StatusStarting:
		return PhaseStarting
	case env.StatusReady:
		return PhaseReady
	case env.StatusFailed:
		return PhaseFailed
	case env.StatusQueued:
		return PhaseQueued
	case env.StatusSleeping:
		return PhaseSleeping
	case env.StatusDeleting:
		if n.Removed != nil {
			return PhaseRemoved
		}
		return PhaseRemoving
	}
	return PhaseWaiting
}

// Marker is the hidden first line by which a pull request's comment is
// found again.
func Marker(key string) string { return "<!-- previewd:" + key + " -->" }

var headings = map[Phase]string{
	PhaseWaiting:   "⏳ Preview waiting",
	PhaseBuilding:  "🔨 Preview building",
	PhaseMigrating: "🗃️ Preview migrating its database",
	PhaseStarting:  "🚀 Preview starting",
	PhaseReady:     "✅ Preview ready",
	PhaseFailed:    "❌ Preview failed",
	PhaseRemoving:  "🧹 Removing the preview",
	PhaseRemoved:   "🗑️ Preview removed",
	PhaseRetrying:  "⚠️ Preview removal incomplete: retrying",
	PhaseQueued:    "🚦 Preview queued",
	PhaseSleeping:  "💤 Preview sleeping",
}

// maxTail bounds the log tail shown (GitHub comments hold 65,536
// characters).
const maxTail = 12000

// Render returns the pull request comment for a notice at now (which
// says how long the current step has run and how soon a TTL warning
// comes due; zero leaves those out).
// dashboard, if set, is previewd's dashboard URL.
func Render(n env.Notice, dashboard string, now time.Time) string {
	e := n.Env
	key := e.Key
	sha := e.SHA
	if sha == "" {
		sha = n.Source.SHA
	}
	short := env.ShortSHA(sha)
	ph := PhaseOf(n)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n### %s\n\n", Marker(key), headings[ph])
	first, _, _ := strings.Cut(e.Message, "\n")
	switch ph {
	case PhaseWaiting:
		fmt.Fprintf(&b, "Not deployed yet: %s\n\n", code(first))
	case PhaseBuilding, PhaseMigrating, PhaseStarting:
		// The step began when its status was saved; the comment is
		// rendered again while it lasts (GitHubOptions.Refresh).
		step := string(ph)
		if d := now.Sub(e.UpdatedAt); !now.IsZero() && !e.UpdatedAt.IsZero() && d >= time.Second {
			step += " " + elapsed(d)
		}
		fmt.Fprintf(&b, "Rolling out %s: %s.\n\n", code(short), step)
	case PhaseReady:
		if e.URL != "" {
			fmt.Fprintf(&b, "**%s**\n\n", link(e.URL, e.URL))
		}
		if n.Source.SHA != "" && e.SHA != "" && n.Source.SHA != e.SHA {
			// A newer commit was not rolled out (path filters): say why.
			fmt.Fprintf(&b, "%s\n\n", code(first))
		}
		if notes := notesOf(e.Message); len(notes) > 0 {
			// What the rollout found and the pull request should know:
			// a tier changed or ignored, an app listening too widely.
			b.WriteString("**Notes**\n\n")
			for _, l := range notes {
				fmt.Fprintf(&b, "- %s\n", code(l))
			}
			b.WriteString("\n")
		}
	case PhaseFailed:
		fmt.Fprintf(&b, "%s\n\n", code(first))
		if t := tail(n.Tail); t != "" {
			fence := fenceFor(t)
			fmt.Fprintf(&b, "<details><summary>Log tail</summary>\n\n%s\n%s\n%s\n\n</details>\n\n", fence, t, fence)
		}
	case PhaseQueued:
		fmt.Fprintf(&b, "Waiting for a running slot: %s. It starts when a running preview sleeps, expires or closes.\n\n", code(first))
	case PhaseSleeping:
		b.WriteString("Sleeping — wakes on the next visit, or `/preview wake`. Its data is kept.\n\n")
	case PhaseRemoving:
		if n.Expired {
			fmt.Fprintf(&b, "No activity for %s: the preview is being removed.\n\n", idleFor(n))
		} else {
			b.WriteString("The pull request is closed or no longer selected; its environment is being removed.\n\n")
		}
	case PhaseRemoved:
		if n.Expired {
			fmt.Fprintf(&b, "Removed after %s without activity; push a commit or comment `/preview up` to bring it back.\n\n", idleFor(n))
		} else {
			b.WriteString("The pull request is closed or no longer selected; its environment is gone.\n\n")
		}
		if len(n.Removed) > 0 {
			fmt.Fprintf(&b, "Removed: %s.\n\n", list(n.Removed))
		}
	case PhaseRetrying:
		if len(n.Removed) > 0 {
			fmt.Fprintf(&b, "Removed: %s.\n\n", list(n.Removed))
		}
		fmt.Fprintf(&b, "**Not removed yet:** %s. previewd keeps retrying until they are gone.\n\n", list(n.Left))
		if first != "" {
			fmt.Fprintf(&b, "%s\n\n", code(first))
		}
	}
	if n.Warning != nil && ph != PhaseRemoved && ph != PhaseRetrying && ph != PhaseRemoving {
		b.WriteString(warning(n, now))
	}
	used := ""
	if e.Usage != nil {
		used = e.Usage.Line()
	}
	if ph != PhaseRemoved && ph != PhaseRetrying && ph != PhaseRemoving {
		b.WriteString("| | |\n|---|---|\n")
		if e.URL != "" && ph != PhaseReady {
			fmt.Fprintf(&b, "| URL | %s |\n", link(e.URL, e.URL))
		}
		if short != "" {
			fmt.Fprintf(&b, "| Commit | %s |\n", code(short))
		}
		if e.Database != "" {
			fmt.Fprintf(&b, "| Database | %s |\n", code(e.Database))
		}
		if (ph == PhaseReady || ph == PhaseFailed) && n.Took > 0 {
			fmt.Fprintf(&b, "| Took | %s |\n", duration(n.Took))
		}
		if e.Kept || n.Source.Keep {
			b.WriteString("| Kept | never sleeps or expires |\n")
		}
		if used != "" {
			fmt.Fprintf(&b, "| Used | %s |\n", used)
		}
		b.WriteString("\n")
		if rh := e.Rehearsal; rh != nil && rh.SHA == sha {
			b.WriteString(rehearsal(*rh))
		}
	} else if ph == PhaseRemoved {
		if used != "" {
			fmt.Fprintf(&b, "Used: %s.\n\n", used)
		}
		if n.Took > 0 {
			fmt.Fprintf(&b, "Took %s.\n\n", duration(n.Took))
		}
	}
	b.WriteString("<sub>previewd")
	if dashboard != "" {
		fmt.Fprintf(&b, " · %s", link("details", strings.TrimSuffix(dashboard, "/")+"/environments/"+key))
	}
	b.WriteString("</sub>\n")
	return b.String()
}

// rehearsal is the comment's migration rehearsal section: the summary,
// the failing check, and the details folded.
func rehearsal(r env.Rehearsal) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Migrations** %s\n\n", strings.TrimPrefix(r.Summary(), "migrations: "))
	if len(r.Failing) > 0 {
		fmt.Fprintf(&b, "**Fails the `%s` check:** %s.\n\n", MigrationsContext, code(strings.Join(r.Failing, ", ")))
	}
	if r.Skipped != "" {
		return b.String()
	}
	b.WriteString("<details><summary>Rehearsal</summary>\n\n")
	fmt.Fprintf(&b, "Rehearsed on %s; %s.\n\n", r.From, r.Observed)
	if r.Error != "" {
		fence := fenceFor(r.Error)
		fmt.Fprintf(&b, "%s\n%s\n%s\n\n", fence, tail(r.Error), fence)
	}
	if r.WaitedFor != "" {
		fmt.Fprintf(&b, "Waited for %s\n\n", code(r.WaitedFor))
	}
	if len(r.Tables) > 0 {
		b.WriteString("| Table | Rows | Strongest lock | Rewritten | Rows touched |\n|---|---|---|---|---|\n")
		for _, t := range r.Tables {
			lock := ""
			if t.Lock != "" {
				lock = env.LockName(t.Lock)
				if t.LockSeconds > 0 {
					lock += " " + env.ShortSeconds(t.LockSeconds)
				}
			}
			rewritten := ""
			switch {
			case t.Dropped:
				rewritten = "dropped"
			case t.Rewritten:
				rewritten = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(t.Name), env.HumanCount(t.Rows), lock, rewritten, env.HumanCount(t.RowsTouched))
		}
		b.WriteString("\n")
	}
	if len(r.Statements) > 0 {
		b.WriteString("| Statement | Time | Lock |\n|---|---|---|\n")
		for _, st := range r.Statements {
			lock := ""
			if st.Lock != "" {
				lock = env.LockName(st.Lock)
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(st.Query), env.ShortSeconds(st.Seconds), lock)
		}
		b.WriteString("\n")
	}
	b.WriteString("</details>\n\n")
	return b.String()
}

// cell writes s as inline code fit for a table cell.
func cell(s string) string {
	return strings.ReplaceAll(code(s), "|", `\|`)
}

// warning says when the TTL removes the preview and how to keep it.
func warning(n env.Notice, now time.Time) string {
	at := *n.Warning
	s := "⏳ This preview will be removed at " + at.UTC().Format("2006-01-02 15:04 UTC")
	if !now.IsZero() && at.After(now) {
		in := at.Sub(now)
		if in >= 2*time.Hour {
			in = in.Round(time.Hour)
		} else {
			in = in.Round(time.Minute)
		}
		s += " (in " + env.HumanDuration(in) + ")"
	}
	if a := n.Env.LastActivityAt; a != nil && at.After(*a) {
		s += " after " + env.HumanDuration(at.Sub(*a)) + " without activity"
	}
	return s + ". Keep it with a push, `/preview extend 3d` or `/preview keep`.\n\n"
}

// idleFor says how long an expired preview went without activity: from
// its last activity to when it expired (or was removed).
func idleFor(n env.Notice) string {
	a := n.Env.LastActivityAt
	for _, end := range []*time.Time{n.Env.ExpiresAt, n.Warning, n.Env.DeletedAt} {
		if a != nil && end != nil && end.After(*a) {
			return env.HumanDuration(end.Sub(*a))
		}
	}
	return "its time"
}

// code writes s as an inline code span, whatever backticks it holds.
func code(s string) string {
	if s == "" {
		return ""
	}
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	ticks := strings.Repeat("`", longest+1)
	if longest > 0 || strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return ticks + " " + s + " " + ticks
	}
	return ticks + s + ticks
}

// fenceFor returns a code fence longer than any backtick run in s.
func fenceFor(s string) string {
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// link writes a markdown link whose target is a URL previewd made.
// maxNotes bounds the notes a ready comment lists.
const maxNotes = 8

// notesOf returns the lines of a ready message after its first (the
// rollout's warnings), at most maxNotes.
func notesOf(msg string) []string {
	_, rest, _ := strings.Cut(msg, "\n")
	var out []string
	for _, l := range strings.Split(rest, "\n") {
		if l = strings.TrimSpace(l); l != "" && len(out) < maxNotes {
			out = append(out, l)
		}
	}
	return out
}

func link(text, url string) string {
	r := strings.NewReplacer("[", `\[`, "]", `\]`)
	return "[" + r.Replace(text) + "](" + strings.NewReplacer("(", "%28", ")", "%29", " ", "%20").Replace(url) + ")"
}

func list(items []string) string {
	return strings.Join(items, ", ")
}

func tail(t string) string {
	t = strings.TrimRight(t, "\n")
	if len(t) > maxTail {
		t = "…" + t[len(t)-maxTail:]
	}
	return t
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// elapsed says how long a step has run: "40 s", "1 m 20 s", "2 m", and
// from an hour on as env.HumanDuration does ("1 h 5 m").
func elapsed(d time.Duration) string {
	switch s := int(d / time.Second); {
	case d >= time.Hour:
		return env.HumanDuration(d)
	case s < 60:
		return fmt.Sprintf("%d s", s)
	case s%60 == 0:
		return fmt.Sprintf("%d m", s/60)
	default:
		return fmt.Sprintf("%d m %d s", s/60, s%60)
	}
}
