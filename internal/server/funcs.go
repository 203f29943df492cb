package server

import (
	"html/template"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

var funcs = template.FuncMap{
	"short": env.ShortSHA,
	"age":   age,
	"firstLine": func(s string) string {
		line, _, _ := strings.Cut(s, "\n")
		if len(line) > 140 {
			line = line[:140] + "…"
		}
		return line
	},
	"rest": func(s string) string {
		_, rest, _ := strings.Cut(s, "\n")
		return rest
	},
	"ts":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"ago":    ago,
	"expiry": expiry,
	// buttons is the lifecycle template's argument: e's buttons, coming
	// back to next ("/" or e's page).
	"buttons": func(e env.Environment, next string) map[string]any { return map[string]any{"Env": e, "Next": next} },
	// rowArgs and statusArgs are the arguments of the dashboard's row
	// and status templates.
	"rowArgs": func(r dashboardRow, now time.Time, who viewer) map[string]any {
		return map[string]any{"Row": r, "Now": now, "Who": who}
	},
	"statusArgs":  func(e env.Environment, now time.Time) map[string]any { return map[string]any{"Env": e, "Now": now} },
	"busy":        busy,
	"stepElapsed": stepElapsed,
	"since":       func(now, t time.Time) time.Duration { return now.Sub(t) },
	"rfc3339":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"bytes":       env.HumanBytes,
	"count":       env.HumanCount,
	"seconds":     env.ShortSeconds,
	"lockName":    env.LockName,
	// host is a URL without its scheme, for a narrow column.
	"host": func(u string) string {
		_, rest, ok := strings.Cut(u, "://")
		if !ok {
			return u
		}
		return rest
	},
}

// ago says when t was for people: "3 m ago"; "" when never.
func ago(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return env.HumanDuration(max(now.Sub(*t), 0)) + " ago"
}

// expiry says when e expires: "kept", "expires in 2 d", "expires now";
// "" when it never does (no ttl, production).
func expiry(now time.Time, e env.Environment) string {
	switch {
	case e.Production():
		return ""
	case e.Kept:
		return "kept"
	case e.ExpiresAt == nil:
		return ""
	case !e.ExpiresAt.After(now):
		return "expires now"
	}
	return "expires in " + env.HumanDuration(e.ExpiresAt.Sub(now))
}

// age says how long ago t was, coarsely.
func age(now, t time.Time) string { return env.ShortDuration(now.Sub(t)) }
