package github

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/command"
	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/githubapi"
	"github.com/previewd/previewd/internal/store"
)

// Replier answers a PR command where the commenter sees it: a reaction
// on the comment and a line in the pull request's previewd comment.
// notify.GitHub is one.
type Replier interface {
	React(ctx context.Context, commentID int64, content string) error
	Say(ctx context.Context, key string, number int, line string) error
}

// Ledger is what commands record: trusted contributors and the audit
// trail. *store.Store is one.
type Ledger interface {
	Trust(ctx context.Context, login, actor string) error
	Untrust(ctx context.Context, login string) (bool, error)
	AddAudit(ctx context.Context, e store.AuditEntry) error
	Get(ctx context.Context, key string) (env.Environment, error)
}

// CommandOptions configure Commands.
type CommandOptions struct {
	Client *githubapi.Client
	// Source learns of trusted contributors at once.
	Source *Source
	Ledger Ledger
	Reply  Replier
	// Redeploy and Enqueue ask the reconciler for work; commands do
	// nothing else.
	Redeploy func(key string)
	Enqueue  func(key string)
	// ResetDB asks for a fresh database (reset-db); nil: refused as
	// unavailable here.
	ResetDB func(key string)
	// DBTier chooses the database tier of a pull request's preview
	// (/preview db <tier>): "" or "default" for the configured one. An
	// *env.TierError is a refusal for the pull request; nil: refused as
	// unavailable here.
	DBTier func(ctx context.Context, key, tier string) (env.TierChoice, error)
	// Down and Up put an environment down (kept removed until up) and
	// bring it back; nil: the commands are refused as unavailable.
	Down func(ctx context.Context, key, actor string) error
	Up   func(ctx context.Context, key string) (bool, error)
	// Sleep, Wake, Extend and Keep are the reconciler's lifecycle entry
	// points (they count as activity themselves); nil: the command is
	// refused as unavailable here. Extend returns when the preview now
	// expires, zero when it never does.
	Sleep  func(ctx context.Context, key, actor string) error
	Wake   func(key string)
	Extend func(ctx context.Context, key string, d time.Duration) (time.Time, error)
	Keep   func(ctx context.Context, key string, on bool) error
	// Self is previewd's own login (a token's user); comments by it are
	// never commands. An App's comments are by a Bot user, also ignored.
	Self string
	// PermissionTTL is how long a permission answer is reused. Default
	// 60s. PermissionCache bounds how many are kept. Default 1024.
	PermissionTTL   time.Duration
	PermissionCache int
	Logger          *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Commands carries out /preview commands from pull request comments.
type Commands struct {
	o   CommandOptions
	log *slog.Logger

	mu    sync.Mutex
	perms map[string]permission // by lower-case login
}

type permission struct {
	level string
	at    time.Time
}

// NewCommands returns the command handler the webhook hands
// issue_comment deliveries to.
func NewCommands(o CommandOptions) *Commands {
	if o.PermissionTTL <= 0 {
		o.PermissionTTL = time.Minute
	}
	if o.PermissionCache <= 0 {
		o.PermissionCache = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Commands{o: o, log: o.Logger, perms: map[string]permission{}}
}

// issueComment is the part of an issue_comment delivery commands read.
type issueComment struct {
	Action string `json:"action"`
	Issue  struct {
		Number      int             `json:"number"`
		State       string          `json:"state"`
		PullRequest json.RawMessage `json:"pull_request"`
	} `json:"issue"`
	Comment struct {
		ID   int64  `json:"id"`
		Body string `json:"body"`
		User struct {
			Login string `json:"login"`
			Type  string `json:"type"`
		} `json:"user"`
	} `json:"comment"`
}

// Handle reads an issue_comment delivery and carries out its command. It
// returns what happened for the webhook's answer ("ignored: ...",
// "accepted", "refused"), and an error only when GitHub could not be
// asked.
func (c *Commands) Handle(ctx context.Context, body []byte) (string, error) {
	var ev issueComment
	if err := json.Unmarshal(body, &ev); err != nil {
		return "", fmt.Errorf("decoding issue_comment: %w", err)
	}
	user := ev.Comment.User
	switch {
	case ev.Action != "created":
		return "ignored: action " + ev.Action, nil
	case len(ev.Issue.PullRequest) == 0 || string(ev.Issue.PullRequest) == "null":
		return "ignored: not a pull request", nil
	case strings.EqualFold(user.Type, "Bot") || strings.HasSuffix(strings.ToLower(user.Login), "[bot]"):
		return "ignored: a bot's comment", nil
	case c.o.Self != "" && strings.EqualFold(user.Login, c.o.Self):
		return "ignored: previewd's own comment", nil
	case strings.Contains(ev.Comment.Body, "<!-- previewd:"):
		return "ignored: previewd's own comment", nil
	}
	cmd, ok := command.Parse(ev.Comment.Body)
	if !ok {
		return "ignored: no command", nil
	}
	n, id := ev.Issue.Number, ev.Comment.ID
	key := env.PullRequestKey(n)
	if err := c.o.Reply.React(ctx, id, "eyes"); err != nil {
		c.log.Warn("reacting to a command failed", "key", key, "err", err)
	}
	level, err := c.permission(ctx, user.Login)
	if err != nil {
		c.answer(ctx, key, n, id, user.Login, cmd, false, "could not check permissions, try again")
		return "", err
	}
	if !mayAct(level) {
		c.answer(ctx, key, n, id, user.Login, cmd, false, "refused, needs write access")
		return "refused", nil
	}
	ok, line := c.run(ctx, key, n, ev.Issue.State, user.Login, cmd)
	c.answer(ctx, key, n, id, user.Login, cmd, ok, line)
	if ok {
		return "accepted", nil
	}
	return "refused", nil
}

func mayAct(level string) bool {
	return level == "admin" || level == "maintain" || level == "write"
}

// run carries out a permitted command and returns whether it was accepted
// and the line that says so.
func (c *Commands) run(ctx context.Context, key string, n int, state, login string, cmd command.Command) (bool, string) {
	actor := "github:" + login
	switch {
	case cmd.Name == "" || cmd.Name == command.Help:
		return true, command.HelpText
	case command.IsLater(cmd.Name):
		return false, "`" + cmd.Name + "` is not available in this version"
	case !slices.Contains(command.Available, cmd.Name):
		return false, "unknown command `" + cmd.Name + "`; " + command.HelpText
	case cmd.Name == command.Revoke:
		if len(cmd.Args) != 1 || strings.TrimPrefix(cmd.Args[0], "@") == "" {
			return false, "usage: `/preview revoke @user`"
		}
		who := strings.TrimPrefix(cmd.Args[0], "@")
		was, err := c.Revoke(ctx, who)
		if err != nil {
			c.log.Error("revoking trust failed", "key", key, "err", err)
			return false, "revoke failed, try again"
		}
		if c.o.Source != nil {
			c.o.Source.Invalidate(key)
		}
		c.o.Enqueue(key)
		if !was {
			return true, "@" + who + " was not a trusted contributor"
		}
		return true, "@" + who + " is no longer a trusted contributor"
	case state != "open":
		return false, cmd.Name + " refused: the pull request is closed"
	case cmd.Name == command.Redeploy:
		if _, err := c.o.Ledger.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
			return false, "redeploy refused: this pull request has no environment"
		} else if err != nil {
			c.log.Error("reading environment failed", "key", key, "err", err)
			return false, "redeploy failed, try again"
		}
		c.o.Redeploy(key)
		return true, "redeploy accepted"
	case cmd.Name == command.ResetDB:
		if c.o.ResetDB == nil {
			return false, "`reset-db` is not available here: the database cannot be reset"
		}
		if _, err := c.o.Ledger.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
			return false, "reset-db refused: this pull request has no environment"
		} else if err != nil {
			c.log.Error("reading environment failed", "key", key, "err", err)
			return false, "reset-db failed, try again"
		}
		c.o.ResetDB(key)
		return true, "reset-db accepted: a fresh database is built and migrated while the old one serves, then swapped in"
	case cmd.Name == command.DB:
		return c.dbTier(ctx, key, cmd)
	case cmd.Name == command.Down || cmd.Name == command.Up:
		return c.downUp(ctx, key, actor, cmd.Name)
	case cmd.Name == command.Sleep || cmd.Name == command.Wake || cmd.Name == command.Extend ||
		cmd.Name == command.Keep || cmd.Name == command.Unkeep:
		return c.lifecycle(ctx, key, n, actor, cmd)
	}
	// approve
	pr, _, err := c.o.Client.API().PullRequests.Get(ctx, c.o.Client.Owner(), c.o.Client.Repo(), n)
	if err != nil {
		c.log.Error("reading the pull request failed", "key", key, "err", err)
		return false, "approve failed, try again"
	}
	head := pr.GetHead().GetRepo().GetFullName()
	if head != "" && strings.EqualFold(head, c.o.Client.Owner()+"/"+c.o.Client.Repo()) {
		return false, "approve refused: not a fork, it needs no approval"
	}
	author := pr.GetUser().GetLogin()
	if author == "" {
		return false, "approve refused: the pull request has no author"
	}
	if err := c.o.Ledger.Trust(ctx, author, actor); err != nil {
		c.log.Error("trusting a contributor failed", "key", key, "err", err)
		return false, "approve failed, try again"
	}
	if c.o.Source != nil {
		c.o.Source.Trust(author, true)
		c.o.Source.Invalidate(key)
	}
	c.o.Enqueue(key)
	return true, "approve accepted: @" + author + " is a trusted contributor (no configured secrets)"
}

// Revoke ends login's trust for this repository: /preview revoke, and
// the API's and dashboard's revoke. Their open fork pull requests are
// read again and reconciled, so they need the label again. It reports
// whether login was trusted.
func (c *Commands) Revoke(ctx context.Context, login string) (bool, error) {
	was, err := c.o.Ledger.Untrust(ctx, login)
	if err != nil {
		return false, err
	}
	if c.o.Source == nil {
		return was, nil
	}
	c.o.Source.Trust(login, false)
	for _, n := range c.o.Source.PullsBy(login) {
		key := env.PullRequestKey(n)
		c.o.Source.Invalidate(key)
		c.o.Enqueue(key)
	}
	return was, nil
}

// dbTier chooses the database tier of the pull request's preview.
func (c *Commands) dbTier(ctx context.Context, key string, cmd command.Command) (bool, string) {
	if c.o.DBTier == nil {
		return false, "`db` is not available here: this database has one tier"
	}
	if len(cmd.Args) != 1 {
		return false, "usage: `/preview db <tier>`: `schema` (a schema in the shared database), `clone` (a database cloned from the template), `empty` (an empty database), or `default` (the configured one)"
	}
	if _, err := c.o.Ledger.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return false, "db refused: this pull request has no environment"
	} else if err != nil {
		c.log.Error("reading environment failed", "key", key, "err", err)
		return false, "db failed, try again"
	}
	ch, err := c.o.DBTier(ctx, key, strings.ToLower(cmd.Args[0]))
	var te *env.TierError
	switch {
	case errors.As(err, &te):
		return false, "db refused: " + te.Why
	case errors.Is(err, store.ErrNotFound):
		return false, "db refused: this pull request has no environment"
	case err != nil:
		c.log.Error("choosing a database tier failed", "key", key, "err", err)
		return false, "db failed, try again"
	case ch.Label != "" && ch.Label != ch.Tier:
		return true, "db accepted, but the label " + codeSpan("preview:db="+ch.Label) + " still chooses tier " + codeSpan(ch.Label) + ": remove the label for " + codeSpan(ch.Tier)
	case ch.Tier == ch.Made:
		return true, "db accepted: the database is already at tier " + codeSpan(ch.Tier)
	}
	return true, "db accepted: the database is re-created at tier " + codeSpan(ch.Tier) + " (it was " + codeSpan(ch.Made) + "), migrated and seeded; its data starts afresh"
}

// downUp puts the pull request's environment down, or brings it up.
func (c *Commands) downUp(ctx context.Context, key, actor, name string) (bool, string) {
	if c.o.Down == nil || c.o.Up == nil {
		return false, "`" + name + "` is not available here"
	}
	if _, err := c.o.Ledger.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return false, name + " refused: this pull request has no environment"
	} else if err != nil {
		c.log.Error("reading environment failed", "key", key, "err", err)
		return false, name + " failed, try again"
	}
	if name == command.Down {
		if err := c.o.Down(ctx, key, actor); err != nil {
			c.log.Error("putting an environment down failed", "key", key, "err", err)
			return false, "down failed, try again"
		}
		return true, "down accepted: the environment is removed until `/preview up`"
	}
	was, err := c.o.Up(ctx, key)
	if err != nil {
		c.log.Error("bringing an environment up failed", "key", key, "err", err)
		return false, "up failed, try again"
	}
	if !was {
		return true, "up accepted: the environment was not down"
	}
	return true, "up accepted: deploying again"
}

// MaxExtend is the longest /preview extend: a longer one is cut to it,
// and the answer says so.
const MaxExtend = 30 * 24 * time.Hour

// errProduction is the message of the reconciler's ErrProduction, which
// this package may not import (README Layout: no imports sideways). A
// pull request's key is never production's, so this is a guard; a test
// keeps the two messages the same.
const errProduction = "production never sleeps or expires"

// lifecycle carries out sleep, wake, extend, keep and unkeep on the pull
// request's environment.
func (c *Commands) lifecycle(ctx context.Context, key string, n int, actor string, cmd command.Command) (bool, string) {
	name := cmd.Name
	available := map[string]bool{
		command.Sleep: c.o.Sleep != nil, command.Wake: c.o.Wake != nil, command.Extend: c.o.Extend != nil,
		command.Keep: c.o.Keep != nil, command.Unkeep: c.o.Keep != nil,
	}
	if !available[name] {
		return false, "`" + name + "` is not available here"
	}
	var d time.Duration
	capped := false
	if name == command.Extend {
		var err error
		if len(cmd.Args) == 1 {
			d, err = env.ParseDuration(cmd.Args[0])
		}
		if len(cmd.Args) != 1 || err != nil || d <= 0 {
			return false, "usage: `/preview extend <duration>`, e.g. `/preview extend 3d` or `12h` (at most " + env.HumanDuration(MaxExtend) + ")"
		}
		if d > MaxExtend {
			d, capped = MaxExtend, true
		}
	}
	if _, err := c.o.Ledger.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return false, name + " refused: this pull request has no environment"
	} else if err != nil {
		c.log.Error("reading environment failed", "key", key, "err", err)
		return false, name + " failed, try again"
	}
	var err error
	line := ""
	switch name {
	case command.Sleep:
		err = c.o.Sleep(ctx, key, actor)
		line = "sleep accepted: the preview sleeps until the next visit or `/preview wake`"
	case command.Wake:
		c.o.Wake(key)
		line = "wake accepted"
	case command.Extend:
		var until time.Time
		until, err = c.o.Extend(ctx, key, d)
		line = "extend accepted: kept until " + until.UTC().Format("2006-01-02 15:04 UTC")
		if until.IsZero() {
			line = "extend accepted: this preview does not expire"
		}
		if capped {
			line += " (extensions are capped at " + env.HumanDuration(MaxExtend) + ")"
		}
	case command.Keep:
		err = c.o.Keep(ctx, key, true)
		line = "keep accepted: this preview never sleeps or expires until `/preview unkeep`"
	case command.Unkeep:
		err = c.o.Keep(ctx, key, false)
		line = "unkeep accepted: the preview sleeps and expires again when idle"
		if c.o.Source != nil {
			if label, ok := c.o.Source.KeptByLabel(n); ok {
				line = "unkeep accepted, but the label " + codeSpan(label) + " still keeps it: remove the label too"
			}
		}
	}
	switch {
	case err != nil && isProduction(err):
		return false, name + " refused: " + errProduction
	case err != nil:
		c.log.Error("a lifecycle command failed", "key", key, "command", name, "err", err)
		return false, name + " failed, try again"
	}
	return true, line
}

// isProduction reports whether err is, or wraps, the reconciler's
// refusal of production (a wrapped error's message holds its cause's).
func isProduction(err error) bool { return strings.Contains(err.Error(), errProduction) }

// code writes s as an inline code span (s holds no backtick: a label
// name from the config).
func codeSpan(s string) string { return "`" + strings.ReplaceAll(s, "`", "") + "`" }

// answer reacts, says the line and audits the command.
func (c *Commands) answer(ctx context.Context, key string, n int, id int64, login string, cmd command.Command, ok bool, line string) {
	reaction := "-1"
	if ok {
		reaction = "+1"
	}
	if err := c.o.Reply.React(ctx, id, reaction); err != nil {
		c.log.Warn("reacting to a command failed", "key", key, "err", err)
	}
	if err := c.o.Reply.Say(ctx, key, n, "@"+login+": "+line); err != nil {
		c.log.Warn("answering a command failed", "key", key, "err", err)
	}
	action := cmd.Name
	if action == "" {
		action = command.Help
	}
	detail := strings.Join(cmd.Args, " ")
	if !ok {
		detail = strings.TrimSpace("refused: " + line + " " + detail)
	}
	if err := c.o.Ledger.AddAudit(ctx, store.AuditEntry{Actor: "github:" + login, Action: action, Via: "pr-comment", Key: key, Detail: detail}); err != nil {
		c.log.Error("auditing a command failed", "key", key, "err", err)
	}
}

// permission asks GitHub for login's permission on the repository,
// reusing an answer younger than PermissionTTL.
func (c *Commands) permission(ctx context.Context, login string) (string, error) {
	k := strings.ToLower(login)
	now := c.o.Now()
	c.mu.Lock()
	p, ok := c.perms[k]
	c.mu.Unlock()
	if ok && now.Sub(p.at) < c.o.PermissionTTL {
		return p.level, nil
	}
	lvl, _, err := c.o.Client.API().Repositories.GetPermissionLevel(ctx, c.o.Client.Owner(), c.o.Client.Repo(), login)
	if githubapi.IsNotFound(err) {
		return "none", nil
	}
	if err != nil {
		return "", fmt.Errorf("asking the permission of %s: %w", login, err)
	}
	level := lvl.GetPermission()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.perms) >= c.o.PermissionCache {
		for l, q := range c.perms {
			if now.Sub(q.at) >= c.o.PermissionTTL || len(c.perms) >= c.o.PermissionCache {
				delete(c.perms, l)
			}
		}
	}
	c.perms[k] = permission{level: level, at: now}
	return level, nil
}
