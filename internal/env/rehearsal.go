package env

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrNotRehearsable is what a runtime's Migrate of a rehearsal release
// (Release.Rehearsal) returns, wrapped, when it cannot point the migration
// at the rehearsal's copy of the database (a Kubernetes Job template that
// reads no variables previewd gives it): the rehearsal is reported as not
// made, and the rollout goes on, rather than migrating whatever database
// the migration reads.
var ErrNotRehearsable = errors.New("the migration cannot be pointed at the rehearsal's copy")

// Rehearsal is what a pull request's migrations did to a copy of the
// reference database (the template, or a schema-only copy of production)
// before they ran against the preview's own: the migration rehearsal
// report.
type Rehearsal struct {
	// SHA is the commit whose migrations ran.
	SHA string    `json:"sha"`
	At  time.Time `json:"at"`
	// Engine is postgres or sqlite.
	Engine string `json:"engine"`
	// From says what the rehearsal database was copied from.
	From string `json:"from"`
	// Observed says how statements and locks were observed (which of
	// pg_stat_statements, pg_locks sampling and inference from the
	// statement kind).
	Observed string `json:"observed"`
	// Seconds is the migrate command's wall time.
	Seconds float64 `json:"seconds"`
	// StatementCount is how many statements ran, when that is known
	// (pg_stat_statements); -1 otherwise.
	StatementCount int `json:"statementCount"`
	// Statements are the statements seen, slowest first.
	Statements []RehearsalStatement `json:"statements,omitempty"`
	// Tables are the tables that existed before and that the migrations
	// locked, rewrote, changed or dropped.
	Tables []RehearsalTable `json:"tables,omitempty"`
	// Findings are what a reviewer should look at, in the order found.
	Findings []RehearsalFinding `json:"findings,omitempty"`
	// Error is set when the migrations failed: the error, with the
	// statement when it is known.
	Error string `json:"error,omitempty"`
	// TimedOut is set when a statement ran into the rehearsal's
	// lock_timeout or statement_timeout; WaitedFor then names the lock
	// it waited for, when one was seen.
	TimedOut  bool   `json:"timedOut,omitempty"`
	WaitedFor string `json:"waitedFor,omitempty"`
	// Failing lists the database.rehearsal.failOn rules the report hits.
	Failing []string `json:"failing,omitempty"`
	// Skipped, when set, says why there was no rehearsal (and nothing else
	// is set).
	Skipped string `json:"skipped,omitempty"`
}

// RehearsalStatement is one statement the migrations ran.
type RehearsalStatement struct {
	Query   string  `json:"query"`
	Seconds float64 `json:"seconds"`
	// Rows is the rows it returned or touched, when known; -1 otherwise.
	Rows int64 `json:"rows"`
	// Lock is the strongest table lock the statement's kind takes
	// (inferred), and Table the table it names.
	Lock  string `json:"lock,omitempty"`
	Table string `json:"table,omitempty"`
}

// RehearsalTable is one existing table the migrations touched.
type RehearsalTable struct {
	// Name is schema-qualified unless it is in the environment's own
	// schema (or public).
	Name string `json:"name"`
	// Rows is how many rows it had before.
	Rows int64 `json:"rows"`
	// Rewritten says its storage was rewritten (its relfilenode changed).
	Rewritten bool `json:"rewritten,omitempty"`
	Dropped   bool `json:"dropped,omitempty"`
	// Lock is the strongest lock taken on it, and LockSeconds how long
	// it was seen held (sampled; 0 when only inferred).
	Lock        string  `json:"lock,omitempty"`
	LockSeconds float64 `json:"lockSeconds,omitempty"`
	// RowsTouched is the rows inserted, updated and deleted in it.
	RowsTouched int64 `json:"rowsTouched,omitempty"`
}

// Finding kinds.
const (
	FindingDropTable  = "drop-table"
	FindingDropColumn = "drop-column"
	FindingRewrite    = "rewrite"
	FindingNotNull    = "not-null"
	FindingType       = "type"
	FindingLock       = "lock"
	FindingTimeout    = "timeout"
	FindingFailed     = "failed"
)

// RehearsalFinding is one thing a reviewer should look at.
type RehearsalFinding struct {
	Kind   string `json:"kind"`
	Table  string `json:"table,omitempty"`
	Column string `json:"column,omitempty"`
	// Detail says it in words: "ACCESS EXCLUSIVE for 1.6 s".
	Detail string `json:"detail,omitempty"`
	// Seconds is how long a lock was held (FindingLock).
	Seconds float64 `json:"seconds,omitempty"`
}

// Lock modes, weakest first, as PostgreSQL's pg_locks names them.
var lockModes = []string{"AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
	"ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"}

// LockRank orders pg_locks' lock modes: 1 for AccessShareLock up to 8 for
// AccessExclusiveLock; 0 for anything else.
func LockRank(mode string) int { return slices.Index(lockModes, mode) + 1 }

// BlocksWrites reports whether a table lock of mode keeps other sessions
// from writing the table (SHARE and stronger).
func BlocksWrites(mode string) bool { return LockRank(mode) >= LockRank("ShareLock") }

// LockName says a pg_locks mode as the documentation does: "ACCESS
// EXCLUSIVE" for AccessExclusiveLock.
func LockName(mode string) string {
	m := strings.TrimSuffix(mode, "Lock")
	var b strings.Builder
	for i, r := range m {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// FailOn is one database.rehearsal.failOn rule: a finding kind ("drop"
// for both kinds of drop, "rewrite", "not-null", "type", "timeout",
// "failed") or a lock held longer than a duration ("lock>5s": a lock that
// blocks writes).
type FailOn struct {
	Kind string
	Over time.Duration // for "lock"
}

func (f FailOn) String() string {
	if f.Kind == FindingLock {
		return "lock>" + f.Over.String()
	}
	return f.Kind
}

// ParseFailOn parses failOn rules.
func ParseFailOn(rules []string) ([]FailOn, error) {
	var out []FailOn
	for _, r := range rules {
		r = strings.TrimSpace(r)
		switch r {
		case "drop", FindingRewrite, FindingNotNull, "notnull", FindingType, FindingTimeout, FindingFailed:
			if r == "notnull" {
				r = FindingNotNull
			}
			out = append(out, FailOn{Kind: r})
			continue
		}
		if rest, ok := strings.CutPrefix(r, "lock>"); ok {
			d, err := time.ParseDuration(rest)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("failOn %q: want lock>DURATION, e.g. lock>5s", r)
			}
			out = append(out, FailOn{Kind: FindingLock, Over: d})
			continue
		}
		return nil, fmt.Errorf("failOn %q: want drop, rewrite, not-null, type, timeout, failed or lock>DURATION", r)
	}
	return out, nil
}

// Judge returns the rules of failOn that the report hits, as they are
// written. A failed migration always fails.
func (r Rehearsal) Judge(failOn []FailOn) []string {
	var out []string
	if r.Skipped != "" {
		return nil
	}
	if r.Error != "" {
		out = append(out, FindingFailed)
	}
	for _, f := range failOn {
		hit := false
		for _, fd := range r.Findings {
			switch {
			case f.Kind == "drop":
				hit = hit || fd.Kind == FindingDropTable || fd.Kind == FindingDropColumn
			case f.Kind == FindingLock:
				hit = hit || fd.Kind == FindingLock && fd.Seconds > f.Over.Seconds()
			default:
				hit = hit || fd.Kind == f.Kind
			}
		}
		if f.Kind == FindingTimeout && r.TimedOut {
			hit = true
		}
		if hit && !slices.Contains(out, f.String()) {
			out = append(out, f.String())
		}
	}
	return out
}

// Summary says the report in one line, as the PR comment's section
// starts: "migrations: 3 statements, 1.8 s; rewrites `orders` (1.2 M
// rows, ACCESS EXCLUSIVE 1.6 s); drops column `users.legacy_id`".
func (r Rehearsal) Summary() string {
	if r.Skipped != "" {
		return "migrations: not rehearsed (" + r.Skipped + ")"
	}
	var b strings.Builder
	b.WriteString("migrations: ")
	if r.StatementCount >= 0 {
		fmt.Fprintf(&b, "%d statement%s, ", r.StatementCount, plural(r.StatementCount))
	}
	b.WriteString(ShortSeconds(r.Seconds))
	var parts []string
	switch {
	// The error and what held a lock are the migrations' own text: the
	// summary leaves them out (the comment shows them in a code block).
	case r.TimedOut && r.WaitedFor != "":
		lock, _, _ := strings.Cut(r.WaitedFor, ", held by")
		parts = append(parts, "timed out waiting for "+lock)
	case r.TimedOut:
		parts = append(parts, "timed out")
	case r.Error != "":
		parts = append(parts, "failed")
	}
	tables := map[string]RehearsalTable{}
	for _, t := range r.Tables {
		tables[t.Name] = t
	}
	rewritten := map[string]bool{}
	for _, f := range r.Findings {
		rewritten[f.Table] = rewritten[f.Table] || f.Kind == FindingRewrite
	}
	for _, f := range r.Findings {
		t := tables[f.Table]
		switch f.Kind {
		case FindingRewrite:
			s := fmt.Sprintf("rewrites %s (%s rows", tick(f.Table), HumanCount(t.Rows))
			if t.Lock != "" {
				s += ", " + LockName(t.Lock)
				if t.LockSeconds > 0 {
					s += " " + ShortSeconds(t.LockSeconds)
				}
			}
			parts = append(parts, s+")")
		case FindingDropTable:
			parts = append(parts, fmt.Sprintf("drops table %s (%s rows)", tick(f.Table), HumanCount(t.Rows)))
		case FindingDropColumn:
			parts = append(parts, fmt.Sprintf("drops column %s", tick(f.Table+"."+f.Column)))
		case FindingNotNull:
			parts = append(parts, fmt.Sprintf("sets NOT NULL on %s (%s rows)", tick(f.Table+"."+f.Column), HumanCount(t.Rows)))
		case FindingType:
			parts = append(parts, fmt.Sprintf("changes the type of %s (%s)", tick(f.Table+"."+f.Column), strings.ReplaceAll(f.Detail, "`", "'")))
		case FindingLock:
			if !rewritten[f.Table] { // said with the rewrite
				parts = append(parts, fmt.Sprintf("locks %s %s", tick(f.Table), f.Detail))
			}
		}
	}
	if len(parts) == 0 && r.Error == "" {
		parts = append(parts, "nothing destructive, no long locks")
	}
	for _, p := range parts {
		b.WriteString("; ")
		b.WriteString(p)
	}
	return b.String()
}

// ShortSeconds says a duration in seconds as "1.8 s", "320 ms" or "2 m 5 s".
func ShortSeconds(s float64) string {
	switch {
	case s < 1:
		return strconv.Itoa(int(s*1000+0.5)) + " ms"
	case s < 60:
		return strconv.FormatFloat(s, 'f', 1, 64) + " s"
	}
	return fmt.Sprintf("%d m %d s", int(s)/60, int(s)%60)
}

// HumanCount says a count as "950", "12 k" or "1.2 M".
func HumanCount(n int64) string {
	switch {
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " M"
	case n >= 1e4:
		return strconv.FormatInt(n/1e3, 10) + " k"
	}
	return strconv.FormatInt(n, 10)
}

// tick quotes a name from the catalog as inline code. Names come from a
// pull request's migrations: backticks and line breaks in them become
// quotes and spaces, so a name cannot end the code span.
func tick(name string) string {
	return "`" + strings.NewReplacer("`", "'", "\n", " ", "\r", " ").Replace(name) + "`"
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
