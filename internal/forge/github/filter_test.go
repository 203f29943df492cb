package github

import "testing"

func TestFilterDecide(t *testing.T) {
	base := Filter{ForkLabel: "preview"}
	pr := func(mod func(*PullRequest)) PullRequest {
		p := PullRequest{Number: 1, HeadBranch: "feature/x", BaseBranch: "main", Labels: []string{"bug"}}
		if mod != nil {
			mod(&p)
		}
		return p
	}
	tests := map[string]struct {
		f           Filter
		pr          PullRequest
		ok, trusted bool
	}{
		"plain":                              {f: base, pr: pr(nil), ok: true, trusted: true},
		"draft skipped":                      {f: base, pr: pr(func(p *PullRequest) { p.Draft = true })},
		"draft allowed":                      {f: Filter{Drafts: true}, pr: pr(func(p *PullRequest) { p.Draft = true }), ok: true, trusted: true},
		"required label present":             {f: Filter{Labels: []string{"preview-me", "bug"}}, pr: pr(func(p *PullRequest) { p.Labels = []string{"Bug", "preview-me"} }), ok: true, trusted: true},
		"required label missing":             {f: Filter{Labels: []string{"preview-me", "bug"}}, pr: pr(nil)},
		"excluded label":                     {f: Filter{ExcludeLabels: []string{"no-preview"}}, pr: pr(func(p *PullRequest) { p.Labels = []string{"NO-PREVIEW"} })},
		"excluded label absent":              {f: Filter{ExcludeLabels: []string{"no-preview"}}, pr: pr(nil), ok: true, trusted: true},
		"branch glob matches":                {f: Filter{Branches: []string{"feature/*"}}, pr: pr(nil), ok: true, trusted: true},
		"branch glob misses":                 {f: Filter{Branches: []string{"fix/*"}}, pr: pr(nil)},
		"ignored branch":                     {f: Filter{IgnoreBranches: []string{"dependabot/*", "feature/*"}}, pr: pr(nil)},
		"glob does not cross slash":          {f: Filter{Branches: []string{"*"}}, pr: pr(nil)},
		"target branch matches":              {f: Filter{TargetBranches: []string{"main", "release-*"}}, pr: pr(func(p *PullRequest) { p.BaseBranch = "release-2" }), ok: true, trusted: true},
		"target branch misses":               {f: Filter{TargetBranches: []string{"main"}}, pr: pr(func(p *PullRequest) { p.BaseBranch = "develop" })},
		"fork without label":                 {f: base, pr: pr(func(p *PullRequest) { p.Fork = true })},
		"fork with label":                    {f: base, pr: pr(func(p *PullRequest) { p.Fork = true; p.Labels = []string{"Preview"} }), ok: true, trusted: false},
		"fork with label, trusted":           {f: Filter{ForkLabel: "preview", TrustForks: true}, pr: pr(func(p *PullRequest) { p.Fork = true; p.Labels = []string{"preview"} }), ok: true, trusted: true},
		"fork label, but excluded":           {f: Filter{ForkLabel: "preview", ExcludeLabels: []string{"wip"}}, pr: pr(func(p *PullRequest) { p.Fork = true; p.Labels = []string{"preview", "wip"} })},
		"fork label, but draft":              {f: base, pr: pr(func(p *PullRequest) { p.Fork = true; p.Draft = true; p.Labels = []string{"preview"} })},
		"fork by a trusted author, no label": {f: base, pr: pr(func(p *PullRequest) { p.Fork = true; p.TrustedAuthor = true }), ok: true, trusted: false},
		"trusted author, no fork label set":  {f: Filter{}, pr: pr(func(p *PullRequest) { p.Fork = true; p.TrustedAuthor = true }), ok: true, trusted: false},
		"trusted author, but excluded":       {f: Filter{ForkLabel: "preview", ExcludeLabels: []string{"wip"}}, pr: pr(func(p *PullRequest) { p.Fork = true; p.TrustedAuthor = true; p.Labels = []string{"wip"} })},
		"trusted author, TrustForks":         {f: Filter{ForkLabel: "preview", TrustForks: true}, pr: pr(func(p *PullRequest) { p.Fork = true; p.TrustedAuthor = true }), ok: true, trusted: true},
		"fork, no fork label set":            {f: Filter{}, pr: pr(func(p *PullRequest) { p.Fork = true; p.Labels = []string{"preview"} })},
		"same repo label irrelevant":         {f: base, pr: pr(func(p *PullRequest) { p.Labels = nil }), ok: true, trusted: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			d := tt.f.Decide(tt.pr)
			if d.OK != tt.ok || (d.OK && d.Trusted != tt.trusted) {
				t.Errorf("Decide = %+v, want ok=%v trusted=%v", d, tt.ok, tt.trusted)
			}
			if !d.OK && d.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestHoldReason(t *testing.T) {
	want := []string{"ci", "lint"}
	tests := map[string]struct {
		states map[string]checkState
		hold   string
	}{
		"none yet":    {nil, "waiting for checks: ci, lint"},
		"one pending": {map[string]checkState{"ci": checkGreen, "lint": checkPending}, "waiting for checks: lint"},
		"one failed":  {map[string]checkState{"ci": checkPending, "lint": checkFailed}, "checks failed: lint"},
		"all green":   {map[string]checkState{"ci": checkGreen, "lint": checkGreen, "other": checkFailed}, ""},
	}
	for name, tt := range tests {
		if got := holdReason(want, tt.states); got != tt.hold {
			t.Errorf("%s: %q, want %q", name, got, tt.hold)
		}
	}
}
