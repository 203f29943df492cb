// Package runtime declares what runs environments: the Runtime the
// reconciler drives, and the small optional interfaces a runtime may also
// implement (its logs, routing through previewd's proxy, recovery after a
// restart, orphan collection, readiness, stopping). runtime/local and
// runtime/kube implement them; the reconciler, the server and the daemon
// consume them.
package runtime

import (
	"context"
	"errors"
	"net/http"

	"github.com/previewd/previewd/internal/env"
)

// Runtime runs environments. Every method is idempotent: the reconciler
// calls it again after a crash or an error.
type Runtime interface {
	// Prepare makes the release's code ready to run (checkout, build, or
	// the image's existence).
	Prepare(ctx context.Context, rel *env.Release) error
	// Migrate runs the migrate command for the release.
	Migrate(ctx context.Context, rel *env.Release) error
	// Deploy starts the release and routes to it once healthy. It may set
	// rel.URL when it knows better (an Ingress host).
	Deploy(ctx context.Context, rel *env.Release) error
	// Running reports whether the environment runs, and at which SHA.
	Running(ctx context.Context, key string) (running bool, sha string, err error)
	// Delete removes everything the runtime made for the environment,
	// working from its inventory items. What fails to go stays recorded.
	Delete(ctx context.Context, key string, items []env.Item) error
}

// ErrNoLogs is returned by Logs when the runtime has no output for the
// environment; the error says why.
var ErrNoLogs = errors.New("no logs")

// Logs is implemented by runtimes that can show an environment's output.
type Logs interface {
	// Logs returns the last n lines of the environment's output (build,
	// migrate, app). It wraps ErrNoLogs when there is none to show.
	Logs(ctx context.Context, key string, n int) (string, error)
}

// FileReader is implemented by runtimes that hold the commits they deploy
// (in an object cache): the reconciler reads files of the repository at a
// release's SHA through it (database.postgres.seed). A path the commit does
// not hold wraps git.ErrNoFile.
type FileReader interface {
	ReadFile(ctx context.Context, src env.Source, path string) ([]byte, error)
}

// Router is implemented by runtimes whose environments previewd's own
// proxy serves.
type Router interface {
	// Proxy returns the handler that forwards a request to the
	// environment's current process, and false when it serves nowhere.
	// The handler owns draining: a process that is being replaced is
	// stopped only once the requests it is serving are done.
	Proxy(key string) (http.Handler, bool)
}

// Recoverer is implemented by runtimes that adopt, after previewd
// restarts, what the previous previewd left running.
type Recoverer interface {
	Recover(ctx context.Context, inventory map[string][]env.Item) error
}

// Collector is implemented by runtimes that can find what they made for
// environments that no longer exist.
type Collector interface {
	// Collect removes what belongs to no key in live and returns its
	// names. live is asked only after the runtime has listed what exists,
	// so something being created is never taken for an orphan.
	Collect(ctx context.Context, live func(context.Context) (map[string]bool, error)) ([]string, error)
}

// Readiness is implemented by runtimes that depend on something outside
// previewd (an API server) and can say whether it answers.
type Readiness interface {
	Ready(ctx context.Context) error
}

// Stopper is implemented by runtimes that can stop an environment's
// processes without removing it (serve --stop-apps-on-exit, demo).
type Stopper interface {
	Stop(ctx context.Context, key string) error
}

// Sleeper is implemented by runtimes that can put an environment to
// sleep: stop what runs (processes, pods) and keep what it needs to start
// again (work dir, build, manifests, data). Deploy of the same release
// wakes it. Sleep is idempotent.
type Sleeper interface {
	Sleep(ctx context.Context, key string) error
}

// Sample is what one environment's running part uses at one moment.
type Sample struct {
	// Instance names what CPUSeconds counts for (a process group, a set
	// of pods); when it changes, the count starts again from zero.
	Instance string
	// CPUSeconds is the CPU time Instance has used so far; zero when the
	// runtime cannot count it (see CPUCores).
	CPUSeconds float64
	// CPUCores is the CPU reserved while it runs (the pods' requests),
	// for runtimes that price reservations rather than use.
	CPUCores float64
	// MemoryBytes is resident memory now (or the pods' requests).
	MemoryBytes int64
}

// Meter is implemented by runtimes that can say what each environment's
// running part uses now, for the cost line. Environments that do not run
// are absent from the map.
type Meter interface {
	Usage(ctx context.Context) (map[string]Sample, error)
}

// Follower is implemented by runtimes that can stream an environment's
// output as it is written (logs -f, the dashboard's live logs).
type Follower interface {
	// Follow sends the last n lines of key's output, then every new line
	// as it is written, to lines, until ctx is done (it then returns
	// nil). It wraps ErrNoLogs when there is nothing to follow. It never
	// closes lines.
	Follow(ctx context.Context, key string, n int, lines chan<- env.LogLine) error
}
