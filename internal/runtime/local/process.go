package local

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

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
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
