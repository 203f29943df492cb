package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
	"github.com/previewd/previewd/internal/runtime"
)

// Migrate runs the migrate command in the release's work dir.
func (r *Runtime) Migrate(ctx context.Context, rel *env.Release) error {
	migrate := r.spec(rel).Migrate
	if migrate == "" {
		return nil
	}
	return r.step(ctx, "migrate", migrate, r.workDir(rel.Key, rel.SHA), rel)
}

// spec is what rel is built and run with: the app spec of its commit when
// the reconciler gave one (env.Release.Spec), else the options.
func (r *Runtime) spec(rel *env.Release) env.AppSpec {
	if rel.Spec == nil {
		return env.AppSpec{Build: r.o.Build, Run: r.o.Run, Migrate: r.o.Migrate, HealthPath: r.o.HealthPath, StartTimeout: r.o.StartTimeout}
	}
	s := *rel.Spec
	if s.HealthPath == "" {
		s.HealthPath = r.o.HealthPath
	}
	if s.StartTimeout <= 0 {
		s.StartTimeout = r.o.StartTimeout
	}
	return s
}

// step runs one shell command of the app's (build or migrate) in dir with
// the release's variables, appending its output to the environment's log.
// A failure is an env.StepError with the log's tail.
func (r *Runtime) step(ctx context.Context, name, command, dir string, rel *env.Release) error {
	ctx, cancel := context.WithTimeout(ctx, r.o.StepTimeout)
	defer cancel()
	logf, err := r.openLog(rel.Key)
	if err != nil {
		return err
	}
	defer logf.Close()
	section := name
	if rel.Rehearsal {
		section = "rehearse" // its own section: the rehearsal's output is not the migration's
	}
	fmt.Fprintf(logf, "==> %s %s at %s: %s\n", section, env.ShortSHA(rel.SHA), time.Now().UTC().Format(time.RFC3339), command)
	start := logSize(logf)
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = dir
	cmd.Env = r.environ(rel, 0)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return &env.StepError{Step: name, Err: err}
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		killGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-waited
		err = fmt.Errorf("%s: %w", name, ctx.Err())
	}
	// A step is over when its shell is: whatever it left running in its
	// group (a watcher, a dev server started with &) would otherwise run
	// on, unaccounted for, past the environment's teardown.
	killGroup(cmd.Process.Pid, syscall.SIGKILL)
	if err != nil {
		return &env.StepError{Step: name, Err: err, Tail: tailFrom(r.logPath(rel.Key), start, 20)}
	}
	return nil
}

// environ is what every command of the environment gets: env.Environ of
// previewd's own environment, the configured env and the release, then
// (for the app) PORT and HOST, and the marker by which previewd finds its
// processes again. HOST is loopback: the app is reached only through
// previewd's proxy (see checkListen).
func (r *Runtime) environ(rel *env.Release, port int) []string {
	e := env.Environ(os.Environ(), r.o.InheritEnv, *rel, r.o.Env)
	if port > 0 {
		e = append(e, "PORT="+strconv.Itoa(port), "HOST="+appHost)
	}
	return append(e, "PREVIEWD_INSTANCE="+r.instance, "PREVIEWD_ENV="+rel.Key)
}

func (r *Runtime) openLog(key string) (*os.File, error) {
	if err := os.MkdirAll(r.envDir(key), 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}
	f, err := os.OpenFile(r.logPath(key), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log: %w", err)
	}
	return f, nil
}

func logSize(f *os.File) int64 {
	st, err := f.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// Logs returns the last n lines of the environment's log (its build,
// migrate and app output). It wraps runtime.ErrNoLogs when the
// environment has written none.
func (r *Runtime) Logs(ctx context.Context, key string, n int) (string, error) {
	if _, err := os.Stat(r.logPath(key)); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("%s has written no output yet: %w", key, runtime.ErrNoLogs)
	} else if err != nil {
		return "", fmt.Errorf("reading the log of %s: %w", key, err)
	}
	return tail(r.logPath(key), n), nil
}

// tail returns the last n lines of the file.
func tail(path string, n int) string { return tailFrom(path, 0, n) }

// tailFrom returns the last n lines of the file after offset, reading at
// most the last 64 KiB.
func tailFrom(path string, offset int64, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const max = 64 << 10
	if st.Size()-offset > max {
		offset = st.Size() - max
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
