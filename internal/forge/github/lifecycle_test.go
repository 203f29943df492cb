package github

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/reconcile"
)

// TestCommandLifecycle: sleep, wake, extend, keep and unkeep from PR
// comments reach the reconciler's entry points with what was asked, and
// every answer (accepted, usage, refused) is a reaction, a line and an
// audit entry.
func TestCommandLifecycle(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.OpenPR(ghtest.PR{Number: 3, HeadSHA: sha(3)})
	g.fake.OpenPR(ghtest.PR{Number: 4, HeadSHA: sha(4)})
	g.fake.SetPermission("alice", "write")
	for _, n := range []int{2, 4} {
		if err := g.st.Upsert(t.Context(), env.Source{Key: env.PullRequestKey(n), Kind: env.KindPullRequest, Number: n, SHA: sha(n)}); err != nil {
			t.Fatal(err)
		}
	}
	g.fake.ClosePR(4, false)
	life := g.life

	g.comment(2, "bob", "/preview sleep")
	if len(life.asleep) != 0 {
		t.Fatal("a reader put the preview to sleep")
	}
	id, _ := g.comment(2, "alice", "/preview sleep")
	if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "+1"}) {
		t.Errorf("sleep: reactions %v", got)
	}
	if life.asleep["pr-2"] != "github:alice" {
		t.Errorf("asleep %v; want pr-2 by github:alice", life.asleep)
	}
	g.comment(2, "alice", "/preview wake")
	if len(life.asleep) != 0 || !slices.Equal(life.woken, []string{"pr-2"}) {
		t.Errorf("after wake: asleep %v, woken %v", life.asleep, life.woken)
	}
	g.comment(2, "alice", "/preview extend 3d")
	if want := life.now.Add(72 * time.Hour); !life.until["pr-2"].Equal(want) {
		t.Errorf("extended until %v, want %v", life.until["pr-2"], want)
	}
	g.comment(2, "alice", "/preview extend 90d")
	if want := life.now.Add(MaxExtend); !life.until["pr-2"].Equal(want) {
		t.Errorf("a long extend: until %v, want the cap %v", life.until["pr-2"], want)
	}
	for _, bad := range []string{"/preview extend", "/preview extend soon", "/preview extend 0", "/preview extend -1h", "/preview extend 3d 4h"} {
		id, _ := g.comment(2, "alice", bad)
		if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "-1"}) {
			t.Errorf("%q: reactions %v", bad, got)
		}
	}
	g.comment(2, "alice", "/preview keep")
	if !life.kept["pr-2"] {
		t.Error("keep did not keep")
	}
	g.comment(2, "alice", "/preview extend 1d")
	g.comment(2, "alice", "/preview unkeep")
	if life.kept["pr-2"] {
		t.Error("unkeep did not unkeep")
	}
	// With the keep label on the pull request, unkeep says the label
	// still keeps it.
	g.fake.UpdatePR(2, func(pr *ghtest.PR) { pr.Labels = []string{"Preview:Keep"} })
	g.deployed(t)
	g.comment(2, "alice", "/preview unkeep")

	g.comment(3, "alice", "/preview sleep") // no environment
	g.comment(4, "alice", "/preview wake")  // closed
	life.fail = fmt.Errorf("sleeping pr-2: %w", reconcile.ErrProduction)
	g.comment(2, "alice", "/preview sleep")
	life.fail = fmt.Errorf("saving: database is locked")
	g.comment(2, "alice", "/preview keep")

	usage := "usage: `/preview extend <duration>`, e.g. `/preview extend 3d` or `12h` (at most 30 d)"
	want := []string{
		"pr-2 @bob: refused, needs write access",
		"pr-2 @alice: sleep accepted: the preview sleeps until the next visit or `/preview wake`",
		"pr-2 @alice: wake accepted",
		"pr-2 @alice: extend accepted: kept until 2026-01-04 00:00 UTC",
		"pr-2 @alice: extend accepted: kept until 2026-01-31 00:00 UTC (extensions are capped at 30 d)",
		"pr-2 @alice: " + usage,
		"pr-2 @alice: " + usage,
		"pr-2 @alice: " + usage,
		"pr-2 @alice: " + usage,
		"pr-2 @alice: " + usage,
		"pr-2 @alice: keep accepted: this preview never sleeps or expires until `/preview unkeep`",
		"pr-2 @alice: extend accepted: this preview does not expire",
		"pr-2 @alice: unkeep accepted: the preview sleeps and expires again when idle",
		"pr-2 @alice: unkeep accepted, but the label `preview:keep` still keeps it: remove the label too",
		"pr-3 @alice: sleep refused: this pull request has no environment",
		"pr-4 @alice: wake refused: the pull request is closed",
		"pr-2 @alice: sleep refused: production never sleeps or expires",
		"pr-2 @alice: keep failed, try again",
	}
	if got := g.reply.said(); !slices.Equal(got, want) {
		t.Errorf("said:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(life.woken) != 1 {
		t.Errorf("woken %v: a refused wake reached the reconciler", life.woken)
	}

	audit := g.audit()
	slices.Reverse(audit) // oldest first
	var got []string
	for _, e := range audit {
		got = append(got, e.Actor+" "+e.Action+" "+e.Key+" "+e.Detail)
	}
	if len(got) != len(want) {
		t.Fatalf("%d audit entries for %d commands: %q", len(got), len(want), got)
	}
	for i, w := range map[int]string{
		1:  "github:alice sleep pr-2 ",
		3:  "github:alice extend pr-2 3d",
		5:  "github:alice extend pr-2 refused: " + usage,
		10: "github:alice keep pr-2 ",
		12: "github:alice unkeep pr-2 ",
		16: "github:alice sleep pr-2 refused: sleep refused: production never sleeps or expires",
	} {
		if got[i] != w {
			t.Errorf("audit[%d] = %q, want %q", i, got[i], w)
		}
	}
}

// TestCommandLifecycleUnavailable: without the reconciler's entry points
// (a daemon that does not wire them) each command is refused as not
// available here, and nothing else happens.
func TestCommandLifecycleUnavailable(t *testing.T) {
	g := newCmdRig(t)
	g.fake.OpenPR(ghtest.PR{Number: 2, HeadSHA: sha(2)})
	g.fake.SetPermission("alice", "admin")
	g.cmds.o.Sleep, g.cmds.o.Wake, g.cmds.o.Extend, g.cmds.o.Keep = nil, nil, nil, nil
	var want []string
	for _, name := range []string{"sleep", "wake", "extend 3d", "keep", "unkeep"} {
		id, _ := g.comment(2, "alice", "/preview "+name)
		if got := g.fake.Reactions(id); !slices.Equal(got, []string{"eyes", "-1"}) {
			t.Errorf("%s: reactions %v", name, got)
		}
		cmd, _, _ := strings.Cut(name, " ")
		want = append(want, "pr-2 @alice: `"+cmd+"` is not available here")
	}
	if got := g.reply.said(); !slices.Equal(got, want) {
		t.Errorf("said %q\nwant %q", got, want)
	}
}

// TestProductionMessage: the refusal is recognised by the reconciler's
// own message, which this package cannot import.
func TestProductionMessage(t *testing.T) {
	if reconcile.ErrProduction.Error() != errProduction {
		t.Fatalf("reconcile.ErrProduction says %q; commands.go expects %q", reconcile.ErrProduction, errProduction)
	}
	if !isProduction(fmt.Errorf("a: %w", fmt.Errorf("b: %w", reconcile.ErrProduction))) || isProduction(fmt.Errorf("production is fine")) {
		t.Error("isProduction")
	}
}
