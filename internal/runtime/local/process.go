package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// proc is one running app process group.
type proc struct {
	Key string `json:"key"`
	// Name is the process's (Process.Name); Worker is true for the
	// processes that are not HTTP. A process recorded before there were
	// several has neither: it is the HTTP one.
	Name   string `json:"name,omitempty"`
	Worker bool   `json:"worker,omitempty"`
	PID    int    `json:"pid"`
	Port   int    `json:"port"`
	SHA    string `json:"sha"`
	Dir    string `json:"dir"`
	Start  uint64 `json:"start"` // kernel start time, to tell a reused pid apart
	// Health is the path its health is checked at (its commit's spec);
	// empty for one recorded before there were specs: the options'.
	Health string `json:"health,omitempty"`
	// Run is a worker's command, so that a previewd started after this
	// one knows the release's workers even when only the commit's spec
	// (the repository's file) declares them.
	Run string `json:"run,omitempty"`

	// vars sums the variables it was started with (see varsSum), so a
	// restart with others is a whole deploy; empty for an adopted one.
	vars      string
	done      chan struct{}   // closed when the process has exited
	transport *http.Transport // the proxy's connections to it

	// Guarded by Runtime.mu.
	stopping bool
	inflight int           // proxied requests it is serving
	retired  bool          // replaced: it drains, then it is stopped
	idle     chan struct{} // closed once retired with nothing in flight
}

func newProc(key string, pid, port int, sha, dir string, start uint64) *proc {
	p := &proc{Key: key, PID: pid, Port: port, SHA: sha, Dir: dir, Start: start}
	p.init()
	return p
}

// init makes what a proc read from the inventory lacks.
func (p *proc) init() {
	p.done = make(chan struct{})
	p.idle = make(chan struct{})
	p.transport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

func (p *proc) addr() string { return net.JoinHostPort(appHost, strconv.Itoa(p.Port)) }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) item() env.Item {
	data, err := json.Marshal(p)
	if err != nil {
		panic("marshalling a proc: " + err.Error()) // plain fields: cannot happen
	}
	return env.Item{Kind: env.ItemProcess, Name: strconv.Itoa(p.PID), Data: data}
}

// Deploy starts the release's app on a free port, waits until it is
// healthy, checks that it listens on loopback only (checkListen), starts
// the environment's other processes, routes the environment to the new
// one and retires the process it replaces: that one is stopped once the
// requests it is serving are done (at most Options.DrainTimeout); the
// other processes it replaces are stopped at once. If the new process
// never gets healthy (or listens beyond loopback when that is refused),
// the old ones keep running. Deploy of the release that runs, when only
// processes other than the HTTP one exited, starts just those
// (restartWorkers). When the check can only warn (no RequireLoopback) it runs once
// the new process is routed: reading the socket tables is the slowest
// part of a start of a prebuilt app (~15 ms with a few hundred sockets),
// and requests held for a preview that wakes need not wait for it.
func (r *Runtime) Deploy(ctx context.Context, rel *env.Release) error {
	if done, err := r.restartWorkers(ctx, rel); done {
		return err
	}
	web, others, err := r.processesOf(rel)
	if err != nil {
		return err
	}
	p, err := r.start(ctx, rel, web)
	if err != nil {
		return err
	}
	if err := r.waitHealthy(ctx, p, r.spec(rel).StartTimeout); err != nil {
		if serr := r.stop(ctx, p); serr != nil {
			r.log.Error("stopping unhealthy process", "env", p.Key, "pid", p.PID, "err", serr)
		}
		return &env.StepError{Step: "start", Err: err, Tail: tail(r.logPath(rel.Key), 20)}
	}
	if r.o.RequireLoopback {
		if err := r.checkListen(p, rel); err != nil {
			if serr := r.stop(ctx, p); serr != nil {
				r.log.Error("stopping exposed process", "env", p.Key, "pid", p.PID, "err", serr)
			}
			return err
		}
	}
	ws, err := r.startWorkers(ctx, rel, others)
	if err != nil {
		if serr := r.stop(ctx, p); serr != nil {
			r.log.Error("stopping process of a failed start", "env", p.Key, "pid", p.PID, "err", serr)
		}
		return err
	}
	old := r.route(p)
	oldWorkers := r.swapWorkers(rel.Key, others, ws)
	// One that died between its start (or health check) and becoming
	// current, when exited did not count it as current, is reported now.
	r.reportExited(p, ws)
	if !r.o.RequireLoopback {
		// Without RequireLoopback it only warns, and returns no error.
		_ = r.checkListen(p, rel)
	}
	if err := r.stopAll(ctx, oldWorkers); err != nil {
		r.log.Error("stopping replaced processes", "env", rel.Key, "err", err)
	}
	if old != nil && old != p {
		if err := r.retire(ctx, old); err != nil {
			r.log.Error("stopping replaced process", "env", old.Key, "pid", old.PID, "err", err)
		}
	}
	r.removeStaleWorkDirs(ctx, rel.Key, p.Dir)
	return nil
}

// start starts one process of rel, in a process group of its own, and
// records it.
func (r *Runtime) start(ctx context.Context, rel *env.Release, spec Process) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := r.workDir(rel.Key, rel.SHA)
	logf, err := r.openLog(rel.Key)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The run command may be any shell command line; the app runs in its
	// own process group, which is what is signalled and watched. A
	// worker's lines are tagged with its name.
	tag := ""
	cmd := exec.Command("/bin/sh", "-c", spec.Run)
	if !spec.HTTP {
		tag = "[" + spec.Name + "] "
		cmd = exec.Command("/bin/sh", "-c", tagScript, "previewd-"+spec.Name, spec.Run, spec.Name, r.awk)
	}
	fmt.Fprintf(logf, "==> run %s on port %d at %s: %s%s\n", env.ShortSHA(rel.SHA), port, time.Now().UTC().Format(time.RFC3339), tag, spec.Run)
	cmd.Dir = dir
	cmd.Env = r.environ(rel, port)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, &env.StepError{Step: "start", Err: err}
	}
	p := newProc(rel.Key, cmd.Process.Pid, port, rel.SHA, dir, startTime(cmd.Process.Pid))
	p.Name, p.Worker = spec.Name, !spec.HTTP
	if p.Worker {
		p.Run = spec.Run
	}
	p.vars = varsSum(r.environ(rel, 0))
	if spec.HTTP {
		p.Health = r.spec(rel).HealthPath
		if rel.Spec != nil && rel.Spec.Processes[spec.Name].HealthPath != "" {
			p.Health = rel.Spec.Processes[spec.Name].HealthPath
		}
	}
	go func() {
		// Its exit status is of no interest: an exit is an exit.
		_ = cmd.Wait()
		r.exited(p)
	}()
	if err := r.inv.PutItem(ctx, rel.Key, p.item()); err != nil {
		killGroup(p.PID, syscall.SIGKILL)
		<-p.done
		return nil, err
	}
	r.log.Debug("process started", "env", rel.Key, "process", spec.Name, "sha", env.ShortSHA(rel.SHA), "pid", p.PID, "port", port)
	return p, nil
}

// healthPath is where p's health is checked.
func (r *Runtime) healthPath(p *proc) string {
	if p.Health != "" {
		return p.Health
	}
	return r.o.HealthPath
}

// exited is called once p's process is gone. What else ran in its
// process group goes with it.
func (r *Runtime) exited(p *proc) {
	killGroup(p.PID, syscall.SIGKILL)
	close(p.done)
	r.mu.Lock()
	current := r.isCurrent(p) && !p.stopping
	r.mu.Unlock()
	if current {
		r.log.Warn("process exited", "env", p.Key, "process", p.Name, "pid", p.PID, "sha", env.ShortSHA(p.SHA))
		if r.o.OnExit != nil {
			r.o.OnExit(p.Key)
		}
	}
}

func (r *Runtime) waitHealthy(ctx context.Context, p *proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	health := r.healthPath(p)
	url := "http://" + p.addr() + health
	// Every 5 ms for the first second, when a prebuilt app (and a
	// woken one) gets healthy: a refused connection costs next to
	// nothing, and each wasted delay is added to a held request's wait.
	// Then less often, up to every 100 ms.
	begin := time.Now()
	delay := 5 * time.Millisecond
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode >= 200 && resp.StatusCode < 300 {
				return nil
			}
			last = fmt.Errorf("%s answered %s", health, resp.Status)
		} else {
			last = err
		}
		select {
		case <-p.done:
			return errors.New("the process exited before it was healthy")
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %w", timeout, last)
		case <-time.After(delay):
		}
		if delay < 100*time.Millisecond && time.Since(begin) > time.Second {
			delay *= 2
		}
	}
}

// stop ends p's process group (SIGTERM, then SIGKILL after StopTimeout),
// stops routing to it and forgets it. A process still there StopTimeout
// after SIGKILL is an error naming its pid, and stays recorded.
func (r *Runtime) stop(ctx context.Context, p *proc) error {
	r.mu.Lock()
	p.stopping = true
	r.unset(p)
	r.mu.Unlock()
	// A process that has exited is not signalled: its pid may be
	// another's by now.
	if p.alive() {
		r.signal(p.PID, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(r.o.StopTimeout):
			r.signal(p.PID, syscall.SIGKILL)
			select {
			case <-p.done:
			case <-time.After(r.o.StopTimeout):
				// Its item stays recorded: the next sleep, stop or
				// teardown tries again.
				return fmt.Errorf("process %d did not stop: it still runs %s after SIGKILL", p.PID, r.o.StopTimeout)
			}
		}
	}
	p.transport.CloseIdleConnections()
	if err := r.inv.DeleteItem(ctx, p.Key, p.item()); err != nil {
		return fmt.Errorf("forgetting process %d: %w", p.PID, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// killGroup signals the process group led by pid. A group that is gone
// already is not an error.
func killGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		syscall.Kill(pid, sig)
	}
}

// statFields returns the fields of /proc/<pid>/stat from field 3 (state)
// on, or nil where there is no /proc. The command name (field 2) is in
// parentheses and may hold spaces, so the split starts after its ')'.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// startTime returns the kernel's start time of pid (field 22 of
// /proc/<pid>/stat), or 0 where there is no /proc or the process is a
// zombie. Together with the pid it names one process even after the pid is
// reused.
func startTime(pid int) uint64 {
	f := statFields(pid)
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// pgid returns the process group of pid (field 5), or 0.
func pgid(pid int) int {
	f := statFields(pid)
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// sameProcess reports whether pid still runs and is the process that was
// started at start (when start is known).
func sameProcess(pid int, start uint64) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	if start == 0 {
		return true
	}
	return startTime(pid) == start
}

// stopDetached stops a process group that is not our child: SIGTERM, wait
// up to timeout for it to go, then SIGKILL.
func stopDetached(pid int, timeout time.Duration) {
	start := startTime(pid)
	killGroup(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !sameProcess(pid, start) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	killGroup(pid, syscall.SIGKILL)
}
