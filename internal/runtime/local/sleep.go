package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/previewd/previewd/internal/env"
)

// Sleep implements runtime.Sleeper. The environment's current process
// stops being routed to at once; once the requests it is serving are done
// (at most DrainTimeout) its process group is stopped as Stop does
// (SIGTERM, then SIGKILL after StopTimeout) and its inventory item goes.
// Its other processes are stopped at once, all together, the same way.
// The work dir, its build (the ".ok" mark Prepare reuses) and the
// database stay, so Deploy of the same release wakes it without fetching
// or building. A process recorded for key that is not the current one (one
// a failed sleep left, or one being replaced) is stopped too. Sleeping an
// environment that sleeps does nothing. A process that will not stop is
// an error naming its pid; it stays recorded, so the next Sleep tries
// again.
func (r *Runtime) Sleep(ctx context.Context, key string) error {
	var errs []error
	tried := map[int]bool{}
	r.mu.Lock()
	p := r.procs[key]
	if p != nil {
		delete(r.procs, key)
	}
	ws := r.workers[key]
	delete(r.workers, key)
	r.mu.Unlock()
	var wg sync.WaitGroup
	var mu sync.Mutex
	sleep := func(q *proc, stop func(context.Context, *proc) error) {
		defer wg.Done()
		err := stop(ctx, q)
		if err == nil {
			err = r.waitGroupGone(q.PID)
		}
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	if p != nil {
		tried[p.PID] = true
		wg.Add(1)
		go sleep(p, r.retire)
	}
	for _, w := range ws {
		tried[w.PID] = true
		wg.Add(1)
		go sleep(w, r.stop)
	}
	wg.Wait()
	errs = slices.DeleteFunc(errs, func(err error) bool { return err == nil })
	items, err := r.inv.Items(ctx, key)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("reading the inventory of %s: %w", key, err))...)
	}
	for _, it := range env.Find(items, env.ItemProcess) {
		var q proc
		if json.Unmarshal(it.Data, &q) != nil || q.PID <= 0 {
			r.forget(ctx, key, it)
			continue
		}
		if tried[q.PID] {
			continue
		}
		if err := r.stopRecorded(q.PID, q.Start); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := r.inv.DeleteItem(ctx, key, it); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sleeping %s: %w", key, errors.Join(errs...))
	}
	r.log.Debug("environment sleeps", "env", key)
	return nil
}

// stopRecorded stops a process group known only from the inventory:
// SIGTERM, SIGKILL after StopTimeout, and an error naming the pid if it
// is still there StopTimeout later.
func (r *Runtime) stopRecorded(pid int, start uint64) error {
	gone := func(d time.Duration) bool {
		deadline := time.Now().Add(d)
		for sameProcess(pid, start) {
			if time.Now().After(deadline) {
				return false
			}
			time.Sleep(5 * time.Millisecond)
		}
		return true
	}
	if !sameProcess(pid, start) {
		return nil
	}
	r.signal(pid, syscall.SIGTERM)
	if gone(r.o.StopTimeout) {
		return r.waitGroupGone(pid)
	}
	r.signal(pid, syscall.SIGKILL)
	if !gone(r.o.StopTimeout) {
		return fmt.Errorf("process %d did not stop: it still runs %s after SIGKILL", pid, r.o.StopTimeout)
	}
	return r.waitGroupGone(pid)
}

// waitGroupGone waits (at most StopTimeout) until no process of process
// group pgrp is left but zombies, which hold nothing and which their
// parent or init reaps. Its leader has exited and the group was sent
// SIGKILL (exited), so the rest normally go within milliseconds. Where
// there is no /proc it returns at once.
func (r *Runtime) waitGroupGone(pgrp int) error {
	deadline := time.Now().Add(r.o.StopTimeout)
	for {
		left, err := groupMembers(pgrp)
		if err != nil || len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			names := make([]string, len(left))
			for i, pid := range left {
				names[i] = strconv.Itoa(pid)
			}
			return fmt.Errorf("process group %d did not stop: %s still run %s after SIGKILL", pgrp, strings.Join(names, ", "), r.o.StopTimeout)
		}
		r.signal(pgrp, syscall.SIGKILL)
		time.Sleep(5 * time.Millisecond)
	}
}

// groupMembers returns the processes of group pgrp that are not zombies,
// from one scan of /proc.
func groupMembers(pgrp int) ([]int, error) {
	var left []int
	err := scanProcs(func(s procStat) {
		if s.pgrp == pgrp && s.state != 'Z' && s.state != 'X' {
			left = append(left, s.pid)
		}
	})
	return left, err
}
