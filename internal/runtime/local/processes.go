package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"

	"github.com/previewd/previewd/internal/env"
)

// Several processes per environment. One is HTTP: it is started, health-
// checked, routed, drained and replaced as the one process of Run always
// was (r.procs). The others (workers, queue consumers) are started once
// the HTTP one is healthy and are current in r.workers; each runs in a
// process group of its own, is stopped by group, recorded in the
// inventory and adopted after a restart like the HTTP one. Every process
// gets the environment's variables and a free port of its own as $PORT
// (so two environments' workers that happen to listen never clash); only
// the HTTP one is reached through the proxy. A worker's output goes to the
// environment's log with each line tagged "[name] " (see tagScript).
//
// A worker that exits is reported to OnExit, and Running is false until it
// runs again, exactly as for the HTTP process: the reconciler restarts
// the environment after its backoff and gives up after its restarts with
// the log's tail. Deploy of the release that runs restarts only what
// exited (restartWorkers): the HTTP process keeps serving.

// Process is one of an environment's processes.
type Process struct {
	// Name tags its log lines and names it in the inventory: a DNS label.
	Name string
	// Run is its shell command.
	Run string
	// HTTP marks the one process that listens on $HOST:$PORT and is
	// health-checked and routed.
	HTTP bool
}

// defaultProcess names the one process of Options.Run.
const defaultProcess = "web"

// splitProcesses returns the HTTP process and the others, from
// Options.Processes, or Run when there are none.
func splitProcesses(run string, ps []Process) (Process, []Process, error) {
	web, others, err := checkProcesses(run, ps)
	if err != nil || len(others) == 0 {
		return web, others, err
	}
	if _, err := exec.LookPath("awk"); err != nil {
		return Process{}, nil, fmt.Errorf("processes besides the HTTP one need awk to tag their output: %w", err)
	}
	return web, others, nil
}

// awkCommand is the awk that tags a worker's lines: mawk reads a pipe a
// whole buffer at a time unless told it is interactive, which would hold
// a quiet worker's lines back; the others (gawk, busybox, BWK) pass on
// what a read returns.
func awkCommand() string {
	out, _ := exec.Command("awk", "-W", "version").CombinedOutput()
	if strings.HasPrefix(string(out), "mawk") {
		return "awk -W interactive"
	}
	return "awk"
}

func checkProcesses(run string, ps []Process) (Process, []Process, error) {
	if len(ps) == 0 {
		return Process{Name: defaultProcess, Run: run, HTTP: true}, nil, nil
	}
	var web []Process
	var others []Process
	seen := map[string]bool{}
	for _, p := range ps {
		if p.Name == "" || seen[p.Name] {
			return Process{}, nil, fmt.Errorf("processes: %q is empty or given twice", p.Name)
		}
		seen[p.Name] = true
		if p.HTTP {
			web = append(web, p)
		} else {
			others = append(others, p)
		}
	}
	if len(web) != 1 {
		return Process{}, nil, fmt.Errorf("processes: %d are HTTP, want exactly one", len(web))
	}
	return web[0], others, nil
}

// tagScript runs a worker: its command ($1) with its output piped
// through awk ($3, see awkCommand), which prefixes each line with
// "[name] " ($2) and writes it to the environment's log at once. Both run in the worker's process
// group, so the output goes on to the log when previewd is gone (and the
// worker is adopted). On SIGTERM to the group the shell and awk wait for
// the command: the shell traps it (and waits, as POSIX says, for the
// pipeline), awk ignores it, so what the command writes as it stops still
// reaches the log, and the group's leader exits when the command has.
//
// The script's own stderr goes to /dev/null (awk's stays the log, as fd
// 3): a shell reports a pipeline member killed by a signal ("Terminated")
// on its stderr, and that untagged line would land in the log at every
// stop.
const tagScript = `exec 3>&2 2>/dev/null
trap : TERM
{ /bin/sh -c "$1"; } 2>&1 | { trap '' TERM; exec $3 -v p="[$2] " '{ print p $0; fflush() }' 2>&3; }`

// isCurrent reports whether p is its environment's current process (of
// its name). r.mu is held.
func (r *Runtime) isCurrent(p *proc) bool {
	if p.Worker {
		return r.workers[p.Key][p.Name] == p
	}
	return r.procs[p.Key] == p
}

// unset makes p no longer current, if it is. r.mu is held.
func (r *Runtime) unset(p *proc) {
	if !r.isCurrent(p) {
		return
	}
	if !p.Worker {
		delete(r.procs, p.Key)
		return
	}
	delete(r.workers[p.Key], p.Name)
	if len(r.workers[p.Key]) == 0 {
		delete(r.workers, p.Key)
	}
}

// processesOf returns rel's HTTP process and the others: its commit's
// spec's processes (env.Release.Spec, with the repository's file over the
// config), or its run alone; without a spec, the options'.
func (r *Runtime) processesOf(rel *env.Release) (Process, []Process, error) {
	switch {
	case rel.Spec == nil || len(rel.Spec.Processes) == 0 && rel.Spec.Run == "":
		return r.web, r.others, nil
	case len(rel.Spec.Processes) == 0:
		// The commit's run, beside the config's other processes.
		return Process{Name: r.web.Name, Run: rel.Spec.Run, HTTP: true}, r.others, nil
	}
	names := make([]string, 0, len(rel.Spec.Processes))
	for n := range rel.Spec.Processes {
		names = append(names, n)
	}
	sort.Strings(names)
	ps := make([]Process, 0, len(names))
	for _, n := range names {
		sp := rel.Spec.Processes[n]
		ps = append(ps, Process{Name: n, Run: sp.Run, HTTP: sp.HTTP})
	}
	web, others, err := splitProcesses("", ps)
	if err == nil && len(others) > 0 && r.awk == "" {
		err = errors.New("processes besides the HTTP one need awk to tag their output")
	}
	if err != nil {
		return Process{}, nil, &env.StepError{Step: "start", Err: err}
	}
	return web, others, nil
}

// othersFor returns the processes besides the HTTP one that key's current
// release runs. r.mu is held.
func (r *Runtime) othersFor(key string) []Process {
	if ps, ok := r.othersOf[key]; ok {
		return ps
	}
	return r.others
}

// missingWorkers returns the workers of key that do not run at sha: none
// is current, it exited, or it runs another SHA. r.mu is held.
func (r *Runtime) missingWorkers(key, sha string) []Process {
	var out []Process
	for _, spec := range r.othersFor(key) {
		w := r.workers[key][spec.Name]
		if w == nil || !w.alive() || w.stopping || w.SHA != sha {
			out = append(out, spec)
		}
	}
	return out
}

// startWorkers starts the given workers of rel. On an error, what it
// started is stopped again.
func (r *Runtime) startWorkers(ctx context.Context, rel *env.Release, specs []Process) ([]*proc, error) {
	var ws []*proc
	for _, spec := range specs {
		w, err := r.start(ctx, rel, spec)
		if err != nil {
			if serr := r.stopAll(ctx, ws); serr != nil {
				r.log.Error("stopping processes of a failed start", "env", rel.Key, "err", serr)
			}
			return nil, err
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// swapWorkers makes ws key's current workers (of the processes others)
// and returns those they replace.
func (r *Runtime) swapWorkers(key string, others []Process, ws []*proc) []*proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.othersOf[key] = others
	var old []*proc
	for _, w := range ws {
		if r.workers[key] == nil {
			r.workers[key] = map[string]*proc{}
		}
		if o := r.workers[key][w.Name]; o != nil && o != w {
			old = append(old, o)
		}
		r.workers[key][w.Name] = w
	}
	// Workers of names no longer configured go too.
	for name, o := range r.workers[key] {
		if !r.isWorker(key, name) {
			old = append(old, o)
			delete(r.workers[key], name)
		}
	}
	return old
}

func (r *Runtime) isWorker(key, name string) bool {
	for _, spec := range r.othersFor(key) {
		if spec.Name == name {
			return true
		}
	}
	return false
}

// restartWorkers restarts, when rel is what key's HTTP process runs and
// serves, only the workers that exited (the reconciler's restart after a
// worker's crash), and reports true. It reports false when a whole deploy
// is needed: nothing runs, another SHA runs, the HTTP process is gone, its
// variables differ from rel's (a database tier changed), or every process
// runs (a redeploy).
func (r *Runtime) restartWorkers(ctx context.Context, rel *env.Release) (bool, error) {
	_, others, err := r.processesOf(rel)
	if err != nil || len(others) == 0 {
		return false, nil
	}
	vars := varsSum(r.environ(rel, 0))
	r.mu.Lock()
	p := r.procs[rel.Key]
	if p == nil || p.stopping || !p.alive() || p.SHA != rel.SHA || (p.vars != "" && p.vars != vars) {
		r.mu.Unlock()
		return false, nil
	}
	missing := r.missingWorkers(rel.Key, rel.SHA)
	var dead []*proc
	for _, spec := range missing {
		if w := r.workers[rel.Key][spec.Name]; w != nil {
			dead = append(dead, w)
		}
	}
	r.mu.Unlock()
	if len(missing) == 0 {
		return false, nil
	}
	// An exited worker is only forgotten (stop signals nothing that is
	// gone); one at another SHA is stopped.
	if err := r.stopAll(ctx, dead); err != nil {
		return true, err
	}
	ws, err := r.startWorkers(ctx, rel, missing)
	if err != nil {
		return true, err
	}
	for _, w := range ws {
		r.log.Info("process restarted", "env", rel.Key, "process", w.Name, "pid", w.PID, "sha", env.ShortSHA(rel.SHA))
	}
	if old := r.swapWorkers(rel.Key, others, ws); len(old) > 0 {
		if err := r.stopAll(ctx, old); err != nil {
			r.log.Error("stopping replaced process", "env", rel.Key, "err", err)
		}
	}
	r.reportExited(p, ws)
	return true, nil
}

// reportExited tells OnExit, once, when one of the processes just made
// current has exited already: exited did not count it as current then.
func (r *Runtime) reportExited(p *proc, ws []*proc) {
	gone := p != nil && !p.alive()
	for _, w := range ws {
		gone = gone || !w.alive()
	}
	if gone && r.o.OnExit != nil {
		if p != nil {
			r.o.OnExit(p.Key)
		} else if len(ws) > 0 {
			r.o.OnExit(ws[0].Key)
		}
	}
}

// varsSum sums a process's variables, to tell whether a release would
// start it with other ones; only the sum is kept, never the values.
func varsSum(environ []string) string {
	h := sha256.New()
	for _, kv := range environ {
		h.Write([]byte(kv))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// stopAll stops ps all at once (see stop).
func (r *Runtime) stopAll(ctx context.Context, ps []*proc) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.stop(ctx, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
