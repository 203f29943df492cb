package testsvc

import (
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	l.Close()
}

// TestProcess: the output goes to the log (truncated, or appended to), the
// exit is seen, and Stop ends a process that ignores its signal by
// killing it, and says so.
func TestProcess(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	for i, want := range []string{"one\n", "two\n"} {
		p, err := Start(exec.Command("sh", "-c", "echo "+strings.TrimSpace(want)+"; exit 3"), Options{Log: log})
		if err != nil {
			t.Fatal(err)
		}
		var ee *exec.ExitError
		if err := p.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("run %d: Wait = %v; want exit status 3", i, err)
		}
		if got := p.LogTail(100); got != want {
			t.Errorf("run %d: log = %q; want %q (truncated)", i, got, want)
		}
		if p.State() == nil || p.Name() != "sh" {
			t.Errorf("run %d: state %v, name %q", i, p.State(), p.Name())
		}
	}
	p, err := Start(exec.Command("sh", "-c", "echo three"), Options{Log: log, Append: true})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait()
	if got := p.LogTail(100); got != "two\nthree\n" {
		t.Errorf("appended log = %q", got)
	}
	if got := p.LogTail(6); got != "three\n" {
		t.Errorf("LogTail(6) = %q", got)
	}

	p, err = Start(exec.Command("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"), Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(p.LogTail(100), "ready") {
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(syscall.SIGTERM, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop of a process ignoring SIGTERM = %v; want it killed", err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("not done after Stop")
	}
	if err := p.Stop(syscall.SIGTERM, time.Second); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}
