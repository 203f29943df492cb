package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"syscall"

	"github.com/previewd/previewd/internal/runtime"
)

// userHZ is the unit of the CPU times in /proc/<pid>/stat: Linux's
// USER_HZ, which the kernel fixes at 100 ticks a second on every
// architecture whatever its internal HZ (it is what sysconf(_SC_CLK_TCK)
// answers), so it is a constant here rather than a cgo call.
const userHZ = 100

// Usage implements runtime.Meter: for each environment, the CPU time and
// resident memory of every process of the process groups of its current
// processes (the HTTP one and the others), summed, from one scan of
// /proc for all environments. CPU time is
// utime+stime+cutime+cstime of each, so what the group's children used
// before they exited and were reaped counts too; memory is each one's
// resident set (field 24 of /proc/<pid>/stat, the same count of pages as
// the second field of /proc/<pid>/statm, read here without a second file
// per process). Instance is each group leader's pid and kernel start time,
// so a restarted process starts a new count. Where there is no /proc (not
// Linux) the map is empty.
func (r *Runtime) Usage(ctx context.Context) (map[string]runtime.Sample, error) {
	out := map[string]runtime.Sample{}
	if goruntime.GOOS != "linux" {
		return out, nil
	}
	r.mu.Lock()
	groups := make(map[int]*proc, len(r.procs))
	for _, p := range r.procs {
		if !p.stopping && p.alive() {
			groups[p.PID] = p
		}
	}
	for _, ws := range r.workers {
		for _, p := range ws {
			if !p.stopping && p.alive() {
				groups[p.PID] = p
			}
		}
	}
	r.mu.Unlock()
	if len(groups) == 0 {
		return out, nil
	}
	type total struct {
		ticks  uint64
		pages  int64
		leader bool // the group's leader is the process we started
	}
	totals := make(map[int]*total, len(groups))
	err := scanProcs(func(s procStat) {
		p := groups[s.pgrp]
		if p == nil {
			return
		}
		t := totals[s.pgrp]
		if t == nil {
			t = &total{}
			totals[s.pgrp] = t
		}
		t.ticks += s.ticks
		t.pages += s.rss
		if s.pid == p.PID && (p.Start == 0 || s.start == p.Start) {
			t.leader = true
		}
	})
	if err != nil {
		return nil, err
	}
	page := int64(os.Getpagesize())
	// The groups of each key in one order (the HTTP one first, then by
	// name), so its Instance stays the same while they run.
	pgrps := slices.Collect(maps.Keys(totals))
	slices.SortFunc(pgrps, func(a, b int) int {
		pa, pb := groups[a], groups[b]
		if pa.Worker != pb.Worker {
			if pb.Worker {
				return -1
			}
			return 1
		}
		return cmp.Compare(pa.Name, pb.Name)
	})
	for _, pgrp := range pgrps {
		t := totals[pgrp]
		if !t.leader {
			continue // its leader is gone (or its pid is another's)
		}
		p := groups[pgrp]
		s := out[p.Key]
		inst := strconv.Itoa(p.PID) + ":" + strconv.FormatUint(p.Start, 10)
		if s.Instance != "" {
			inst = s.Instance + "," + inst
		}
		out[p.Key] = runtime.Sample{
			Instance:    inst,
			CPUSeconds:  s.CPUSeconds + float64(t.ticks)/userHZ,
			MemoryBytes: s.MemoryBytes + t.pages*page,
		}
	}
	return out, nil
}

// procStat is what is read of one process's /proc/<pid>/stat.
type procStat struct {
	pid, pgrp int
	state     byte
	ticks     uint64 // utime+stime+cutime+cstime, in USER_HZ ticks
	start     uint64 // start time, in ticks after boot
	rss       int64  // resident pages
}

// scanProcs calls fn with the stat of every process in /proc. A process
// that goes away while it is read is passed over. It reads each stat
// into one buffer with plain system calls: it runs for every process of
// the machine.
func scanProcs(fn func(procStat)) error {
	d, err := os.Open("/proc")
	if err != nil {
		return fmt.Errorf("listing processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("listing processes: %w", err)
	}
	buf := make([]byte, 4096)
	path := make([]byte, 0, 32)
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		path = append(append(append(path[:0], "/proc/"...), name...), "/stat"...)
		n, err := readSmall(string(path), buf)
		if err != nil {
			continue
		}
		if s, ok := parseStat(buf[:n]); ok {
			s.pid = pid
			fn(s)
		}
	}
	return nil
}

// readSmall reads a file of at most len(buf) bytes into buf.
func readSmall(path string, buf []byte) (int, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// parseStat parses a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may hold spaces and parentheses, so fields are
// counted from after its last ')'. Fields (1-based, proc(5)): 3 state,
// 5 pgrp, 14-17 utime stime cutime cstime, 22 starttime, 24 rss.
func parseStat(b []byte) (procStat, bool) {
	i := len(b) - 1
	for i >= 0 && b[i] != ')' {
		i--
	}
	if i < 0 {
		return procStat{}, false
	}
	var s procStat
	field := 2 // the one that ended at ')'
	seen := 0
	for j := i + 1; j < len(b); {
		for j < len(b) && (b[j] == ' ' || b[j] == '\n') {
			j++
		}
		if j >= len(b) {
			break
		}
		k := j
		for k < len(b) && b[k] != ' ' && b[k] != '\n' {
			k++
		}
		field++
		f := b[j:k]
		j = k
		switch field {
		case 3:
			s.state = f[0]
		case 5:
			n, ok := atoi(f)
			if !ok {
				return procStat{}, false
			}
			s.pgrp = int(n)
		case 14, 15, 16, 17:
			n, ok := atoi(f)
			if !ok {
				return procStat{}, false
			}
			if n > 0 {
				s.ticks += uint64(n)
			}
		case 22:
			n, ok := atoi(f)
			if !ok {
				return procStat{}, false
			}
			s.start = uint64(n)
		case 24:
			n, ok := atoi(f)
			if !ok {
				return procStat{}, false
			}
			s.rss = n
		default:
			continue
		}
		if seen++; field == 24 {
			return s, seen == 8
		}
	}
	return procStat{}, false
}

// atoi parses a decimal integer, with an optional minus sign, without
// allocating.
func atoi(b []byte) (int64, bool) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}
