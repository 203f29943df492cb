package local

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Recover is called once at start-up with every environment's inventory.
// It adopts app processes that still run and answer their health check
// (the HTTP one), with the environment's other processes that still run
// at the same SHA (the newest of each name), stops every process of this
// instance that it cannot account for (so no second copy of an app is
// left running), and removes files no inventory names.
func (r *Runtime) Recover(ctx context.Context, inventory map[string][]env.Item) error {
	adopted := map[int]bool{}
	keepDirs := map[string]bool{}
	for key, items := range inventory {
		for _, it := range env.Find(items, env.ItemWorkDir) {
			keepDirs[it.Name] = true
		}
		var newest *proc
		var workers []proc
		for _, it := range env.Find(items, env.ItemProcess) {
			var p proc
			if err := json.Unmarshal(it.Data, &p); err != nil || p.PID <= 0 {
				r.forget(ctx, key, it)
				continue
			}
			if p.Worker {
				workers = append(workers, p)
				continue
			}
			if !sameProcess(p.PID, p.Start) || !r.healthy(ctx, p.Port, r.healthPath(&p)) {
				if sameProcess(p.PID, p.Start) {
					stopDetached(p.PID, r.o.StopTimeout)
				}
				r.forget(ctx, key, it)
				continue
			}
			if newest != nil {
				// Two live processes for one key: a crash came between
				// starting the new one and stopping the old. Keep one.
				stopDetached(newest.PID, r.o.StopTimeout)
				r.forget(ctx, key, newest.item())
				delete(adopted, newest.PID)
			}
			q := p
			newest = &q
			adopted[p.PID] = true
		}
		if newest != nil {
			r.adopt(newest)
			if ps := recordedWorkers(newest.SHA, workers); ps != nil {
				// The release's workers, as it recorded them: those its
				// commit's spec declared, which the options may lack. One
				// that died meanwhile is missing, so the reconciler starts
				// it again.
				r.mu.Lock()
				r.othersOf[key] = ps
				r.mu.Unlock()
			}
		}
		for _, w := range r.recoverWorkers(ctx, key, newest, workers) {
			adopted[w.PID] = true
			r.adopt(w)
		}
	}
	r.stopStrays(adopted)
	r.removeStrayFiles(keepDirs, inventory)
	return nil
}

// recordedWorkers returns the processes of the workers recorded at sha,
// one per name, or nil when there are none or one was recorded without
// its command (by a previewd before they were).
func recordedWorkers(sha string, recorded []proc) []Process {
	runs := map[string]string{}
	for _, w := range recorded {
		if w.SHA != sha {
			continue
		}
		if w.Run == "" {
			return nil
		}
		runs[w.Name] = w.Run
	}
	if len(runs) == 0 {
		return nil
	}
	names := make([]string, 0, len(runs))
	for n := range runs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]Process, len(names))
	for i, n := range names {
		out[i] = Process{Name: n, Run: runs[n]}
	}
	return out
}

// recoverWorkers returns, of the recorded workers of key, those to adopt:
// the newest that runs of each name still configured, at the SHA of web
// (the adopted HTTP process). The others are stopped and forgotten; with
// no web, all are.
func (r *Runtime) recoverWorkers(ctx context.Context, key string, web *proc, recorded []proc) []*proc {
	keep := map[string]*proc{}
	var drop []proc
	for _, w := range recorded {
		if !sameProcess(w.PID, w.Start) || web == nil || w.SHA != web.SHA || !r.isWorker(key, w.Name) {
			drop = append(drop, w)
			continue
		}
		if k := keep[w.Name]; k != nil {
			if k.Start > w.Start {
				drop = append(drop, w)
				continue
			}
			drop = append(drop, *k)
		}
		q := w
		keep[w.Name] = &q
	}
	for _, w := range drop {
		if sameProcess(w.PID, w.Start) {
			stopDetached(w.PID, r.o.StopTimeout)
		}
		r.forget(ctx, key, w.item())
	}
	out := make([]*proc, 0, len(keep))
	for _, w := range keep {
		out = append(out, w)
	}
	return out
}

// adopt takes over a process a previous previewd started.
func (r *Runtime) adopt(p *proc) {
	p.init()
	r.mu.Lock()
	if p.Worker {
		if r.workers[p.Key] == nil {
			r.workers[p.Key] = map[string]*proc{}
		}
		r.workers[p.Key][p.Name] = p
	} else {
		r.procs[p.Key] = p
	}
	r.mu.Unlock()
	r.log.Info("process adopted", "env", p.Key, "process", p.Name, "pid", p.PID, "sha", env.ShortSHA(p.SHA))
	go func() {
		for sameProcess(p.PID, p.Start) {
			time.Sleep(250 * time.Millisecond)
		}
		r.exited(p)
	}()
}

func (r *Runtime) healthy(ctx context.Context, port int, health string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + health
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// stopStrays kills every process carrying this instance's marker that was
// not adopted: apps started just before a crash, before their pid was
// recorded, and steps (build, migrate) cut off by the crash.
func (r *Runtime) stopStrays(adopted map[int]bool) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	marker := []byte("PREVIEWD_INSTANCE=" + r.instance + "\x00")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || adopted[pid] {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(append(b, 0), marker) {
			continue
		}
		// A child of an adopted app inherits the marker; leave the
		// adopted groups alone.
		if pg := pgid(pid); adopted[pg] {
			continue
		}
		r.log.Warn("stopping stray process", "pid", pid)
		stopDetached(pid, r.o.StopTimeout)
	}
}

// removeStrayFiles removes environment directories of keys that own
// nothing any more, and work dirs no inventory names.
func (r *Runtime) removeStrayFiles(keep map[string]bool, inventory map[string][]env.Item) {
	dirs, _ := filepath.Glob(filepath.Join(r.o.Dir, "envs", "*"))
	for _, d := range dirs {
		key := filepath.Base(d)
		if _, ok := inventory[key]; !ok {
			r.log.Info("removing stray directory", "dir", d)
			if err := os.RemoveAll(d); err != nil {
				r.log.Error("removing stray directory", "dir", d, "err", err)
			}
			continue
		}
		srcs, _ := filepath.Glob(filepath.Join(d, "src-*"))
		for _, s := range srcs {
			base := strings.TrimSuffix(strings.TrimSuffix(s, ".ok"), ".tmp")
			if !keep[base] || strings.HasSuffix(s, ".tmp") {
				r.log.Info("removing stray work dir", "dir", s)
				if err := os.RemoveAll(s); err != nil {
					r.log.Error("removing stray work dir", "dir", s, "err", err)
				}
			}
		}
	}
}
