package postgres

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/previewd/previewd/internal/env"
)

// maxStatements is how many statements a report lists.
const maxStatements = 10

// analyze fills rep from what the rehearsal observed: the catalog before
// and after, the samples and, when have, pg_stat_statements' statements.
// It is pure: the report follows from the observations.
func analyze(rep *env.Rehearsal, before, after map[uint32]*relation, s *samples, stmts []env.RehearsalStatement, have bool) {
	if have {
		n := 0
		var kept []env.RehearsalStatement
		for _, st := range stmts {
			if control(st.Query) {
				continue
			}
			calls := 1
			if i := strings.LastIndex(st.Query, " (×"); i >= 0 {
				fmt.Sscanf(st.Query[i:], " (×%d)", &calls)
			}
			n += calls
			kept = append(kept, st)
		}
		rep.StatementCount = n
		stmts = kept
	} else {
		stmts = nil
		for _, st := range s.stmts {
			if !control(st.Query) {
				stmts = append(stmts, *st)
			}
		}
	}
	slices.SortStableFunc(stmts, func(a, b env.RehearsalStatement) int {
		return cmp.Or(cmp.Compare(b.Seconds, a.Seconds), cmp.Compare(a.Query, b.Query))
	})
	if len(stmts) > maxStatements {
		stmts = stmts[:maxStatements]
	}
	rep.Statements = stmts

	for _, oid := range sortedByName(before) {
		b := before[oid]
		a := after[oid]
		t := env.RehearsalTable{Name: b.name, Rows: b.rows}
		var found []env.RehearsalFinding
		if a == nil {
			t.Dropped = true
			found = append(found, env.RehearsalFinding{Kind: env.FindingDropTable, Table: b.name, Detail: fmt.Sprintf("%d rows", b.rows)})
		} else {
			t.RowsTouched = max(a.touched-b.touched, 0)
			if b.filenode != 0 && a.filenode != b.filenode {
				t.Rewritten = true
				found = append(found, env.RehearsalFinding{Kind: env.FindingRewrite, Table: b.name, Detail: fmt.Sprintf("%d rows", b.rows)})
			}
			for _, num := range sortedCols(b.cols) {
				bc := b.cols[num]
				ac, ok := a.cols[num]
				switch {
				case !ok:
					found = append(found, env.RehearsalFinding{Kind: env.FindingDropColumn, Table: b.name, Column: bc.name})
				case ac.typ != bc.typ && b.rows > 0:
					found = append(found, env.RehearsalFinding{Kind: env.FindingType, Table: b.name, Column: bc.name, Detail: bc.typ + " → " + ac.typ})
				}
				if ok && !bc.notNull && ac.notNull && b.rows > 0 {
					found = append(found, env.RehearsalFinding{Kind: env.FindingNotNull, Table: b.name, Column: bc.name})
				}
			}
		}
		// The strongest lock: sampled, or inferred from a statement that
		// names the table.
		if ls := s.tables[oid]; ls != nil {
			t.Lock, t.LockSeconds = ls.mode, ls.last.Sub(ls.first).Seconds()
		}
		// Statements pg_stat_statements recorded ran to the end, so they
		// took their lock; a sampled one may have waited for it in vain.
		for _, st := range stmts {
			if !have || st.Lock == "" || !sameTable(st.Table, b.name) {
				continue
			}
			switch {
			case env.LockRank(st.Lock) > env.LockRank(t.Lock):
				t.Lock, t.LockSeconds = st.Lock, st.Seconds
			case st.Lock == t.Lock:
				t.LockSeconds = max(t.LockSeconds, st.Seconds)
			}
		}
		if t.Lock == "AccessShareLock" || t.Lock == "RowShareLock" {
			t.Lock, t.LockSeconds = "", 0 // reads: not worth a line
		}
		if env.BlocksWrites(t.Lock) && !t.Dropped {
			found = append(found, env.RehearsalFinding{Kind: env.FindingLock, Table: b.name, Seconds: t.LockSeconds,
				Detail: fmt.Sprintf("%s for %s", env.LockName(t.Lock), env.ShortSeconds(t.LockSeconds))})
		}
		if len(found) > 0 || t.Lock != "" || t.RowsTouched > 0 {
			rep.Tables = append(rep.Tables, t)
			rep.Findings = append(rep.Findings, found...)
		}
	}
	if rep.Error != "" {
		if strings.Contains(rep.Error, "lock timeout") || strings.Contains(rep.Error, "statement timeout") {
			rep.TimedOut = true
			rep.WaitedFor = s.waited
			rep.Findings = append(rep.Findings, env.RehearsalFinding{Kind: env.FindingTimeout, Detail: s.waited})
		}
		if last := s.last(); last != "" && !strings.Contains(rep.Error, last) {
			rep.Error += "\nlast statement seen running: " + last
		}
		rep.Findings = append(rep.Findings, env.RehearsalFinding{Kind: env.FindingFailed, Detail: firstLine(rep.Error)})
	}
}

// last returns the statement seen running last.
func (s *samples) last() string {
	var q string
	var k stmtKey
	for sk, st := range s.stmts {
		if sk.start.After(k.start) || sk.start.Equal(k.start) && st.Query > q {
			k, q = sk, st.Query
		}
	}
	return q
}

// control reports whether a statement is transaction or session control,
// not part of what a migration does.
func control(q string) bool {
	f := strings.Fields(strings.ToUpper(q))
	if len(f) == 0 {
		return true
	}
	switch strings.TrimSuffix(f[0], ";") {
	case "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET", "RESET", "SHOW", "DISCARD":
		return true
	}
	return false
}

func sortedByName(m map[uint32]*relation) []uint32 {
	ks := keys(m)
	slices.SortFunc(ks, func(a, b uint32) int { return cmp.Compare(m[a].name, m[b].name) })
	return ks
}

func sortedCols(m map[int16]column) []int16 {
	out := make([]int16, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sameTable reports whether a table named in a statement (maybe
// qualified, maybe public-qualified) is the report's name.
func sameTable(stmt, name string) bool {
	if stmt == "" {
		return false
	}
	if stmt == name {
		return true
	}
	_, short, ok := strings.Cut(stmt, ".")
	return ok && short == name && !strings.Contains(name, ".")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// InferLock returns the strongest table lock a statement of q's kind
// takes (as pg_locks names it) and the table it names, or "" when it
// takes none worth reporting or is not recognized. It follows the
// documentation's "Explicit Locking" table; TestInferLockOnServer checks
// it against what PostgreSQL takes.
func InferLock(q string) (mode, table string) {
	toks := tokens(q, 14)
	up := make([]string, len(toks))
	for i, t := range toks {
		up[i] = strings.ToUpper(t)
	}
	has := func(words ...string) bool {
		for i := 0; i+len(words) <= len(up); i++ {
			if slices.Equal(up[i:i+len(words)], words) {
				return true
			}
		}
		return false
	}
	// next returns the first token after skipping the given words.
	after := func(i int, skip ...string) string {
		for i < len(toks) && slices.Contains(skip, up[i]) {
			i++
		}
		if i < len(toks) {
			return unquote(toks[i])
		}
		return ""
	}
	if len(up) < 2 {
		return "", ""
	}
	switch {
	case up[0] == "ALTER" && up[1] == "TABLE":
		t := after(2, "IF", "EXISTS", "ONLY")
		switch {
		case has("VALIDATE", "CONSTRAINT"), has("SET", "STATISTICS"), has("ATTACH", "PARTITION"),
			has("CLUSTER", "ON"), has("SET", "WITHOUT", "CLUSTER"), has("SET", "("), has("RESET", "("):
			return "ShareUpdateExclusiveLock", t
		case has("FOREIGN", "KEY") && !has("DROP"):
			return "ShareRowExclusiveLock", t
		}
		return "AccessExclusiveLock", t
	case up[0] == "CREATE" && (up[1] == "INDEX" || up[1] == "UNIQUE"):
		i := slices.Index(up, "ON")
		if i < 0 {
			return "", ""
		}
		t := after(i+1, "ONLY")
		if has("CONCURRENTLY") {
			return "ShareUpdateExclusiveLock", t
		}
		return "ShareLock", t
	case up[0] == "CREATE" && (up[1] == "TRIGGER" || len(up) > 2 && up[1] == "OR" && has("TRIGGER")):
		if i := slices.Index(up, "ON"); i >= 0 {
			return "ShareRowExclusiveLock", after(i + 1)
		}
	case up[0] == "DROP" && up[1] == "TABLE":
		return "AccessExclusiveLock", after(2, "IF", "EXISTS")
	case up[0] == "TRUNCATE":
		return "AccessExclusiveLock", after(1, "TABLE", "ONLY")
	case up[0] == "VACUUM" && has("FULL"):
		return "AccessExclusiveLock", after(1, "FULL", "VERBOSE", "ANALYZE", "(FULL)")
	case up[0] == "CLUSTER":
		return "AccessExclusiveLock", after(1, "VERBOSE")
	case up[0] == "REINDEX" && len(up) > 2 && up[1] == "TABLE":
		if up[2] == "CONCURRENTLY" {
			return "ShareUpdateExclusiveLock", after(3)
		}
		return "ShareLock", after(2)
	case up[0] == "LOCK":
		t := after(1, "TABLE", "ONLY")
		if i := slices.Index(up, "IN"); i >= 0 && i+1 < len(up) {
			words := up[i+1:]
			if j := slices.Index(words, "MODE"); j >= 0 {
				words = words[:j]
			}
			var b strings.Builder
			for _, w := range words {
				b.WriteString(w[:1] + strings.ToLower(w[1:]))
			}
			return b.String() + "Lock", t
		}
		return "AccessExclusiveLock", t
	case up[0] == "INSERT" && up[1] == "INTO":
		return "RowExclusiveLock", after(2)
	case up[0] == "UPDATE":
		return "RowExclusiveLock", after(1, "ONLY")
	case up[0] == "DELETE" && up[1] == "FROM":
		return "RowExclusiveLock", after(2, "ONLY")
	}
	return "", ""
}

// tokens splits the first n tokens of a statement: words, quoted
// identifiers (kept with their quotes, a qualified name as one token) and
// single punctuation.
func tokens(q string, n int) []string {
	var out []string
	i := 0
	for i < len(q) && len(out) < n {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '"' || isWord(c):
			j := i
			for j < len(q) {
				if q[j] == '"' {
					j++
					for j < len(q) && (q[j] != '"' || j+1 < len(q) && q[j+1] == '"') {
						if q[j] == '"' {
							j++
						}
						j++
					}
					j++
					continue
				}
				if !isWord(q[j]) && q[j] != '.' {
					break
				}
				j++
			}
			out = append(out, q[i:min(j, len(q))])
			i = j
		default:
			out = append(out, q[i:i+1])
			i++
		}
	}
	return out
}

func isWord(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// unquote turns a possibly quoted, possibly qualified name into the
// report's form: unquoted parts as PostgreSQL folds them, the public (or
// the environment's) schema kept, for sameTable to match.
func unquote(tok string) string {
	var parts []string
	for p := range strings.SplitSeq(tok, ".") {
		if strings.HasPrefix(p, `"`) && strings.HasSuffix(p, `"`) && len(p) >= 2 {
			parts = append(parts, strings.ReplaceAll(p[1:len(p)-1], `""`, `"`))
		} else {
			parts = append(parts, strings.ToLower(p))
		}
	}
	return strings.Join(parts, ".")
}
