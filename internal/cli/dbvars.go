package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Formats of `previewd db create --format`.
const (
	formatText   = "text"
	formatGitHub = "github"
	formatDotenv = "dotenv"
	formatJSON   = "json"
)

// masked stands for a password in text output, as in url.URL.Redacted.
const masked = "xxxxx"

// secretsIn returns the secret parts of a variable's value, longest
// first: the password of a postgres:// URL, as written and decoded, or
// the password of a keyword/value connection string, as written and
// unquoted. None for a value without a password.
func secretsIn(v string) []string {
	var raw, plain string
	if i := strings.Index(v, "://"); i >= 0 {
		auth := v[i+3:]
		if j := strings.IndexAny(auth, "/?#"); j >= 0 {
			auth = auth[:j]
		}
		at := strings.LastIndex(auth, "@")
		if at < 0 {
			return nil
		}
		_, pw, ok := strings.Cut(auth[:at], ":")
		if !ok {
			return nil
		}
		raw, plain = pw, pw
		if p, err := url.PathUnescape(pw); err == nil {
			plain = p
		}
	} else if m := kvPassword.FindStringSubmatch(v); m != nil {
		raw, plain = m[1], m[1]
		if strings.HasPrefix(raw, "'") {
			plain = strings.NewReplacer(`\'`, `'`, `\\`, `\`).Replace(raw[1 : len(raw)-1])
		}
	}
	var out []string
	for _, s := range []string{raw, plain} {
		if s != "" && (len(out) == 0 || out[0] != s) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// kvPassword finds password=... in a keyword/value connection string.
var kvPassword = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// writeVars prints vars in format: text (NAME=value, each password
// masked unless show), dotenv (NAME='value', quoted for POSIX sh) or json
// (one object). github is writeGitHub's.
func writeVars(w io.Writer, format string, vars map[string]string, show bool) error {
	names := sortedNames(vars)
	switch format {
	case formatText:
		for _, k := range names {
			v := vars[k]
			if !show {
				for _, s := range secretsIn(v) {
					v = strings.ReplaceAll(v, s, masked)
				}
			}
			fmt.Fprintf(w, "%s=%s\n", k, v)
		}
	case formatDotenv:
		for _, k := range names {
			fmt.Fprintf(w, "%s=%s\n", k, shellQuote(vars[k]))
		}
	case formatJSON:
		b, err := json.Marshal(vars)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", b)
	default:
		return fmt.Errorf("--format: unknown value %q; want text, github, dotenv or json", format)
	}
	return nil
}

// masking reports whether text output of vars hides anything.
func masking(vars map[string]string) bool {
	for _, v := range vars {
		if len(secretsIn(v)) > 0 {
			return true
		}
	}
	return false
}

// writeGitHub writes, for GitHub Actions, an ::add-mask:: command for
// every secret (each password and each whole value that holds one) to
// stdout, then the NAME=value lines to envFile (appended, made 0600) if
// it is not empty, else to stdout after the masks. It refuses an envFile
// that is stdout itself: the runner reads workflow commands from stdout
// only, and the env file does not take them.
func writeGitHub(stdout io.Writer, envFile string, vars map[string]string) error {
	if err := checkGitHubEnv(stdout, envFile); err != nil {
		return err
	}
	names := sortedNames(vars)
	var masks strings.Builder
	for _, k := range names {
		s := secretsIn(vars[k])
		if len(s) == 0 {
			continue
		}
		for _, m := range append([]string{vars[k]}, s...) {
			fmt.Fprintf(&masks, "::add-mask::%s\n", escapeCommand(m))
		}
	}
	var lines strings.Builder
	for _, k := range names {
		v := vars[k]
		if strings.ContainsAny(v, "\r\n") {
			d := "PREVIEWD_EOF_" + randomDelimiter()
			fmt.Fprintf(&lines, "%s<<%s\n%s\n%s\n", k, d, v, d)
			continue
		}
		fmt.Fprintf(&lines, "%s=%s\n", k, v)
	}
	if _, err := io.WriteString(stdout, masks.String()); err != nil {
		return err
	}
	if envFile == "" {
		_, err := io.WriteString(stdout, lines.String())
		return err
	}
	f, err := os.OpenFile(envFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("--format github: $GITHUB_ENV: %w", err)
	}
	if _, err := f.WriteString(lines.String()); err != nil {
		f.Close()
		return fmt.Errorf("--format github: $GITHUB_ENV: %w", err)
	}
	return f.Close()
}

// checkGitHubEnv refuses a stdout that is the file envFile names.
func checkGitHubEnv(stdout io.Writer, envFile string) error {
	f, ok := stdout.(*os.File)
	if envFile == "" || !ok {
		return nil
	}
	so, err1 := f.Stat()
	ef, err2 := os.Stat(envFile)
	if err1 == nil && err2 == nil && os.SameFile(so, ef) {
		return errors.New(`--format github: stdout is $GITHUB_ENV; run it without ">> $GITHUB_ENV": the masks must reach the runner on stdout, and the variables are appended to $GITHUB_ENV on their own`)
	}
	return nil
}

// escapeCommand escapes a workflow command's data as the runner
// unescapes it.
func escapeCommand(s string) string {
	return strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A").Replace(s)
}

// shellQuote single-quotes s for POSIX sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func sortedNames(vars map[string]string) []string {
	names := make([]string, 0, len(vars))
	for k := range vars {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func randomDelimiter() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}
