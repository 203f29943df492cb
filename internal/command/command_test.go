package command

import (
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := map[string]struct {
		body string
		want Command
		ok   bool
	}{
		"redeploy":             {body: "/preview redeploy", want: Command{Name: "redeploy"}, ok: true},
		"any case":             {body: "/PREVIEW Redeploy", want: Command{Name: "redeploy"}, ok: true},
		"args":                 {body: "/preview revoke @bob", want: Command{Name: "revoke", Args: []string{"@bob"}}, ok: true},
		"bare":                 {body: "/preview", want: Command{}, ok: true},
		"leading blank lines":  {body: "\n\n  /preview help\nthanks", want: Command{Name: "help"}, ok: true},
		"crlf":                 {body: "/preview redeploy\r\nplease", want: Command{Name: "redeploy"}, ok: true},
		"tabs":                 {body: "/preview\tredeploy", want: Command{Name: "redeploy"}, ok: true},
		"not first":            {body: "please\n/preview redeploy"},
		"mid line":             {body: "try /preview redeploy"},
		"longer word":          {body: "/previewer redeploy"},
		"dash":                 {body: "/preview-redeploy"},
		"fenced":               {body: "```\n/preview redeploy\n```"},
		"tilde fence":          {body: "~~~sh\n/preview redeploy\n~~~"},
		"after a fence":        {body: "```\nx\n```\n/preview redeploy", want: Command{Name: "redeploy"}, ok: true},
		"quoted":               {body: "> /preview redeploy"},
		"quote then command":   {body: "> /preview down\n\n/preview up", want: Command{Name: "up"}, ok: true},
		"indented code":        {body: "    /preview redeploy"},
		"empty":                {body: ""},
		"other slash command":  {body: "/deploy"},
		"unknown is a command": {body: "/preview dance now", want: Command{Name: "dance", Args: []string{"now"}}, ok: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := Parse(tt.body)
			if ok != tt.ok || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v, %v", tt.body, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestKnown: every command is either carried out or answered as coming
// later, never both; help names every one carried out.
func TestKnown(t *testing.T) {
	for _, name := range []string{Redeploy, Approve, Revoke, Help, Down, Up, Sleep, Wake, Extend, Keep, Unkeep, ResetDB} {
		avail := false
		for _, a := range Available {
			avail = avail || a == name
		}
		if avail == IsLater(name) {
			t.Errorf("%s: available %v, later %v", name, avail, IsLater(name))
		}
		if avail && !strings.Contains(HelpText, "`"+Prefix+" "+name) {
			t.Errorf("help does not name %s", name)
		}
	}
	if IsLater(ResetDB) {
		t.Error("reset-db is answered as unavailable; this version carries it out")
	}
}
