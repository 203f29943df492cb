package server

import (
	"fmt"
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
	"ts": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
}

// age says how long ago t was, coarsely.
func age(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
