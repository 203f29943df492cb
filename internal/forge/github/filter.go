package github

import (
	"strings"

	"github.com/previewd/previewd/internal/forge"
)

// Filter decides which pull requests get environments.
type Filter struct {
	// Labels must all be present; ExcludeLabels must all be absent.
	// Label names compare case-insensitively, as on GitHub.
	Labels, ExcludeLabels []string
	// Branches and IgnoreBranches are globs on the head branch;
	// TargetBranches are globs on the base branch. Empty include lists
	// match everything.
	Branches, IgnoreBranches, TargetBranches []string
	// Drafts admits draft pull requests.
	Drafts bool
	// ForkLabel must be present on a pull request from a fork, unless
	// its author is a trusted contributor (/preview approve).
	ForkLabel string
	// TrustForks marks admitted fork environments as trusted.
	TrustForks bool
}

// PullRequest is what a filter looks at.
type PullRequest struct {
	Number     int
	Draft      bool
	Labels     []string
	HeadBranch string
	BaseBranch string
	// Fork is true when the head is in another repository (or its
	// repository was deleted).
	Fork bool
	// TrustedAuthor is true when the author was approved as a trusted
	// contributor: it lifts the fork label requirement only.
	TrustedAuthor bool
}

// Decision is a filter's answer.
type Decision struct {
	OK      bool
	Trusted bool
	// Reason says why a pull request was left out.
	Reason string
}

// Decide applies the filter to one pull request. It is a pure function.
func (f Filter) Decide(pr PullRequest) Decision {
	has := func(name string) bool {
		for _, l := range pr.Labels {
			if strings.EqualFold(l, name) {
				return true
			}
		}
		return false
	}
	switch {
	case pr.Draft && !f.Drafts:
		return Decision{Reason: "draft"}
	case !forge.Included(f.Branches, f.IgnoreBranches, pr.HeadBranch):
		return Decision{Reason: "head branch " + pr.HeadBranch + " is filtered out"}
	case len(f.TargetBranches) > 0 && !forge.MatchAny(f.TargetBranches, pr.BaseBranch):
		return Decision{Reason: "base branch " + pr.BaseBranch + " is not a target"}
	}
	for _, l := range f.Labels {
		if !has(l) {
			return Decision{Reason: "missing label " + l}
		}
	}
	for _, l := range f.ExcludeLabels {
		if has(l) {
			return Decision{Reason: "excluded label " + l}
		}
	}
	if pr.Fork {
		if !pr.TrustedAuthor && (f.ForkLabel == "" || !has(f.ForkLabel)) {
			return Decision{Reason: "fork without label " + f.ForkLabel}
		}
		// A trusted author's fork is still a fork: Trusted (configured
		// secrets) follows TrustForks alone.
		return Decision{OK: true, Trusted: f.TrustForks}
	}
	return Decision{OK: true, Trusted: true}
}
