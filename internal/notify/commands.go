package notify

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// maxLines is how many answers to PR commands the comment keeps.
const maxLines = 5

// commandsMarker separates the answers to PR commands from the rest of
// the comment.
const commandsMarker = "<!-- previewd:commands -->"

// React adds a reaction (eyes, +1, -1, ...) to issue comment id, as the
// answer to a PR command. Reacting twice with the same content is a
// no-op on GitHub.
func (g *GitHub) React(ctx context.Context, id int64, content string) error {
	if _, _, err := g.api.Reactions.CreateIssueCommentReaction(ctx, g.owner, g.repo, id, content); err != nil {
		return fmt.Errorf("reacting %s to comment %d: %w", content, id, err)
	}
	return nil
}

// Say adds line to the answers to PR commands at the end of pull request
// number's comment, making the comment if there is none yet (a command
// on a pull request with no environment). It keeps the last few lines,
// and later notices keep them too.
func (g *GitHub) Say(ctx context.Context, key string, number int, line string) error {
	defer g.lockComment(key)()
	g.known(key, func(s *shown) {
		s.lines = append(s.lines, line)
		if len(s.lines) > maxLines {
			s.lines = s.lines[len(s.lines)-maxLines:]
		}
	})
	// Looked up once: writeComment is handed what was found, none included.
	c, err := g.currentComment(ctx, key, number)
	if err != nil {
		return err
	}
	var body string
	if c != nil {
		body = c.body
	}
	if body == "" {
		body = Marker(key) + "\n### previewd\n\nNo environment for this pull request."
	}
	if i := strings.Index(body, "\n\n"+commandsMarker); i >= 0 {
		body = body[:i]
	}
	return g.writeComment(ctx, key, number, c, body+g.section(key))
}

// section renders the answers to PR commands, or "".
func (g *GitHub) section(key string) string {
	var lines []string
	g.known(key, func(s *shown) { lines = append(lines, s.lines...) })
	if len(lines) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\n\n" + commandsMarker + "\n")
	for _, l := range lines {
		b.WriteString("\n- " + l)
	}
	b.WriteString("\n")
	return b.String()
}

// lockComment holds key's comment for one edit; call the result to let
// it go.
func (g *GitHub) lockComment(key string) func() {
	for {
		var m *sync.Mutex
		g.known(key, func(s *shown) { m = s.write })
		m.Lock()
		// The key may have been forgotten (its removal told) between
		// reading the lock and taking it: then take the new one.
		g.mu.Lock()
		s := g.shown[key]
		same := s != nil && s.write == m
		g.mu.Unlock()
		if same {
			return m.Unlock
		}
		m.Unlock()
	}
}
