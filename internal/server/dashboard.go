package server

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
	"github.com/previewd/previewd/internal/store"
)

// The dashboard's pages are complete server renders; static/dashboard.js
// only enhances them: it follows GET /api/v1/events (and, on an
// environment's page, its logs), patches what a change says at once, then
// fetches the page again and swaps the parts that changed, so the rows,
// their order and the buttons a principal may press are always the
// server's. Without JavaScript the pages are plain tables (reloaded by a
// <noscript> refresh).

//go:embed static
var static embed.FS

// logLines is how much of the log an environment's page shows as text.
const logLines = 60

// assets serves the embedded static files; their URLs carry a hash of
// the content (?v=), so they may be cached for long.
type assets struct {
	h       http.Handler
	version string
}

func newAssets() assets {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is there at build time
	}
	sum := sha256.New()
	fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(sub, p)
			sum.Write(b)
		}
		return nil
	})
	fileServer := http.FileServerFS(sub)
	return assets{
		version: hex.EncodeToString(sum.Sum(nil))[:12],
		h: http.StripPrefix("/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=86400")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			fileServer.ServeHTTP(w, r)
		})),
	}
}

// rank orders the dashboard's rows: failed environments first, then
// production, then the rest (each group in the store's order).
func rank(e env.Environment) int {
	switch {
	case e.Status == env.StatusFailed:
		return 0
	case e.Production():
		return 1
	}
	return 2
}

// order sorts envs for the dashboard (stable: the store's order within a rank).
func order(envs []env.Environment) {
	slices.SortStableFunc(envs, func(a, b env.Environment) int { return rank(a) - rank(b) })
}

// matches reports whether e is shown for the filter q: every word of q
// (case-insensitive) is part of e's key, branch or status. An empty q
// matches everything. static/dashboard.js filters the same way.
func matches(e env.Environment, q string) bool {
	hay := strings.ToLower(e.Key + " " + e.Branch + " " + string(e.Status))
	for _, w := range strings.Fields(strings.ToLower(q)) {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// busy reports whether status is a step whose elapsed time the dashboard
// shows ("building 12 s").
func busy(s env.Status) bool {
	switch s {
	case env.StatusBuilding, env.StatusMigrating, env.StatusStarting, env.StatusDeleting:
		return true
	}
	return false
}

// stepElapsed says how long a step has run: "12 s", "3 m 05 s", then as
// env.HumanDuration. static/dashboard.js says it the same way.
func stepElapsed(d time.Duration) string {
	d = max(d, 0)
	if d < time.Hour && d >= time.Minute {
		s := int(d.Seconds())
		return fmt.Sprintf("%d m %02d s", s/60, s%60)
	}
	return env.HumanDuration(d)
}

// timelineEntry is one line of an environment's timeline: what happened,
// who did it (an audited action's actor, else previewd) and how.
type timelineEntry struct {
	Time    time.Time
	What    string
	Who     string
	Via     string
	SHA     string
	Message string
}

// timeline reads the history's events for people. An audited action's
// event says "<action> by <actor> (<via>)[: <detail>]" (store.AddAudit);
// its parts become What, Who, Via and Message.
func timeline(events []env.Event) []timelineEntry {
	out := make([]timelineEntry, 0, len(events))
	for _, ev := range events {
		t := timelineEntry{Time: ev.Time, What: ev.Reason, Who: "previewd", SHA: ev.SHA, Message: ev.Message}
		if ev.Reason == store.ReasonAction {
			if action, actor, via, detail, ok := parseAction(ev.Message); ok {
				t.What, t.Who, t.Via, t.Message = action, actor, via, detail
			} else {
				t.Who = ""
			}
		}
		out = append(out, t)
	}
	return out
}

// parseAction splits an audited action's message.
func parseAction(msg string) (action, actor, via, detail string, ok bool) {
	action, rest, ok := strings.Cut(msg, " by ")
	if !ok || action == "" {
		return "", "", "", "", false
	}
	head, detail, _ := strings.Cut(rest, ": ")
	open := strings.LastIndex(head, " (")
	if open <= 0 || !strings.HasSuffix(head, ")") {
		return "", "", "", "", false
	}
	return action, head[:open], head[open+2 : len(head)-1], detail, true
}

// databaseView is an environment's database as its page shows it.
type databaseView struct {
	Kind string
	Name string
	// Size in bytes; negative when unknown.
	Size int64
}

// databaseOf says which database e has, from what it owns.
func databaseOf(e env.Environment, items []env.Item) databaseView {
	d := databaseView{Name: e.Database, Size: -1}
	for _, it := range items {
		switch it.Kind {
		case env.ItemSQLite:
			d.Kind = "SQLite file"
		case env.ItemSchema:
			d.Kind = "PostgreSQL schema"
		case env.ItemDatabase:
			d.Kind = "PostgreSQL database"
		default:
			continue
		}
		if d.Name == "" {
			d.Name = it.Name
		}
	}
	if d.Kind == "" && d.Name != "" {
		d.Kind = "shared" // production's, which previewd does not own
	}
	return d
}

// dashboardRow is one environment as the dashboard shows it.
type dashboardRow struct {
	env.Environment
	Rank int
}

func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	live, err := s.o.Store.Live(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	downs, err := s.o.Store.Downs(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	trusted, err := s.o.Store.Trusted(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	order(live)
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	rows := make([]dashboardRow, 0, len(live))
	for _, e := range live {
		if matches(e, q) {
			rows = append(rows, dashboardRow{Environment: e, Rank: rank(e)})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err = s.tmpl.ExecuteTemplate(w, "dashboard.html", map[string]any{
		"Rows": rows, "Total": len(live), "Shown": len(rows), "Q": q,
		"Down": downs, "Trusted": trusted, "Source": s.sourceStatus(), "Version": s.o.Version, "Now": time.Now(), "Who": s.viewerOf(r),
		"Asset": s.assets.version,
	})
	if err != nil {
		s.o.Logger.Error("rendering dashboard", "err", err)
	}
}

func (s *Server) environmentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	e, err := s.environment(ctx, r.PathValue("key"))
	if err != nil {
		http.Error(w, err.Error(), statusOf(err))
		return
	}
	logs, hasLogs := "", s.o.Logs != nil
	if hasLogs {
		if logs, err = s.o.Logs.Logs(ctx, e.Key, logLines); err != nil && !errors.Is(err, runtime.ErrNoLogs) {
			s.o.Logger.Warn("reading logs", "env", e.Key, "err", err)
		}
	}
	down, err := s.o.Store.IsDown(ctx, e.Key)
	if err != nil {
		s.o.Logger.Error("reading the down mark", "env", e.Key, "err", err)
	}
	items, err := s.o.Store.Items(ctx, e.Key)
	if err != nil {
		s.o.Logger.Error("reading the inventory", "env", e.Key, "err", err)
	}
	db := databaseOf(e, items)
	if db.Name != "" {
		db.Size = s.databaseSize(ctx, e.Key)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err = s.tmpl.ExecuteTemplate(w, "environment.html", map[string]any{
		"Env": e, "Down": down, "CanReset": s.o.ResetDB != nil, "Tiers": s.tiers(), "Now": time.Now(), "Version": s.o.Version, "Logs": logs, "HasLogs": hasLogs,
		"Timeline": timeline(e.Events), "Items": items, "Database": db, "Who": s.viewerOf(r), "Asset": s.assets.version,
	})
	if err != nil {
		s.o.Logger.Error("rendering environment page", "err", err)
	}
}

// databaseSize asks Options.DatabaseSize, if set; -1 when unknown.
func (s *Server) databaseSize(ctx context.Context, key string) int64 {
	if s.o.DatabaseSize == nil {
		return -1
	}
	n, err := s.o.DatabaseSize(ctx, key)
	if err != nil {
		s.o.Logger.Debug("database size unknown", "env", key, "err", err)
		return -1
	}
	return n
}
