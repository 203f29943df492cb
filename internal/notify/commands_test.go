package notify

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
)

// TestAnswers: reactions land on the commenter's comment; Say adds lines
// to the one sticky comment (making it when the pull request has no
// environment yet), keeps the last few, and a later notice keeps them.
func TestAnswers(t *testing.T) {
	fake := ghtest.New(t, "octocat", "Hello-World")
	fake.OpenPR(ghtest.PR{Number: 7, HeadSHA: sha(7)})
	ctx := context.Background()
	g := newNotifier(t, fake, false)
	id := fake.AddComment(7, "alice", "/preview redeploy")
	for _, r := range []string{"eyes", "+1", "+1"} {
		if err := g.React(ctx, id, r); err != nil {
			t.Fatal(err)
		}
	}
	if got := fake.Reactions(id); !slices.Equal(got, []string{"eyes", "+1"}) {
		t.Errorf("reactions %v", got)
	}
	if err := g.Say(ctx, "pr-7", 7, "@alice: redeploy refused: this pull request has no environment"); err != nil {
		t.Fatal(err)
	}
	ours := func() []ghtest.Comment {
		var out []ghtest.Comment
		for _, c := range fake.Comments(7) {
			if strings.HasPrefix(c.Body, Marker("pr-7")) {
				out = append(out, c)
			}
		}
		return out
	}
	if cs := ours(); len(cs) != 1 || !strings.Contains(cs[0].Body, "- @alice: redeploy refused") {
		t.Fatalf("comments %v", cs)
	}
	g.Notify(ctx, notice("pr-7", env.StatusReady, nil))
	g.Wait()
	for i := range 6 {
		if err := g.Say(ctx, "pr-7", 7, "@alice: redeploy accepted "+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	g.Notify(ctx, notice("pr-7", env.StatusBuilding, nil))
	g.Wait()
	cs := ours()
	if len(cs) != 1 {
		t.Fatalf("%d comments, want 1", len(cs))
	}
	b := cs[0].Body
	if !strings.Contains(b, "Preview building") || strings.Contains(b, "refused") || strings.Contains(b, "accepted a") ||
		!strings.Contains(b, "accepted b") || !strings.Contains(b, "accepted f") || strings.Count(b, commandsMarker) != 1 {
		t.Errorf("comment body:\n%s", b)
	}
}
