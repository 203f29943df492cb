package command

import (
	"strings"
)

// Prefix starts every command.
const Prefix = "/preview"

// The names of the commands.
const (
	Redeploy = "redeploy"
	Approve  = "approve"
	Revoke   = "revoke"
	Help     = "help"
	Down     = "down"
	Up       = "up"
	Sleep    = "sleep"
	Wake     = "wake"
	Extend   = "extend"
	Keep     = "keep"
	Unkeep   = "unkeep"
	ResetDB  = "reset-db"
	DB       = "db"
)

// Available are the commands this version carries out.
var Available = []string{Redeploy, ResetDB, DB, Sleep, Wake, Extend, Keep, Unkeep, Down, Up, Approve, Revoke, Help}

// Later are the commands other versions carry out; this one answers them
// honestly as not available.
var Later = []string{}

// Command is one parsed command.
type Command struct {
	// Name is lower-case; "" for a bare /preview.
	Name string
	// Args are the words after the name.
	Args []string
}

// Parse finds the command in a comment body: the first line, outside
// fenced code blocks and quotes, that starts with /preview (any case),
// followed by a space or the end of the line. Lines before it may be
// blank; a comment whose first text is anything else holds no command.
func Parse(body string) (Command, bool) {
	fence := ""
	for _, line := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(line)
		if fence != "" {
			if strings.HasPrefix(t, fence) {
				fence = ""
			}
			continue
		}
		switch {
		case t == "":
			continue
		case strings.HasPrefix(t, "```"), strings.HasPrefix(t, "~~~"):
			fence = t[:3]
			continue
		case strings.HasPrefix(t, ">"):
			continue
		case strings.HasPrefix(line, "    "), strings.HasPrefix(line, "\t"):
			continue // an indented code block
		}
		if len(t) < len(Prefix) || !strings.EqualFold(t[:len(Prefix)], Prefix) {
			return Command{}, false
		}
		rest := t[len(Prefix):]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			return Command{}, false // /previewer, /preview-x
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return Command{}, true
		}
		c := Command{Name: strings.ToLower(f[0])}
		if len(f) > 1 {
			c.Args = f[1:]
		}
		return c, true
	}
	return Command{}, false
}

// IsLater reports whether name belongs to a later version.
func IsLater(name string) bool {
	for _, n := range Later {
		if n == name {
			return true
		}
	}
	return false
}

// HelpText is the answer to help and to an unknown command.
const HelpText = "commands: `/preview redeploy` (deploy again), `/preview reset-db` (a fresh database, migrated while the old one serves), `/preview db clone` (choose the database tier: `schema`, `clone`, `empty`, or `default`; a `preview:db=` label wins), `/preview sleep` (stop it until the next visit), `/preview wake` (start it again), `/preview extend 3d` (keep it from expiring that long), `/preview keep` (never sleep or expire), `/preview unkeep` (sleep and expire again when idle), `/preview down` (remove this environment until up), `/preview up` (deploy it again), `/preview approve` (deploy this fork pull request and trust its author's later ones), `/preview revoke @user` (stop trusting a fork contributor), `/preview help`; needs write access"
