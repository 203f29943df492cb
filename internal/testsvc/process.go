package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// FreePort returns a port on 127.0.0.1 nothing listens on now. Another
// process may take it before the server binds it, so callers retry a
// start that failed on its port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Options configure Start.
type Options struct {
	// Log is the file the process's stdout and stderr go to.
	Log string
	// Append keeps what Log holds (earlier attempts) instead of
	// truncating it.
	Append bool
	// DeathSignal is sent to the process if this test process dies
	// without stopping it (Linux only), so no server outlives a killed
	// test. Zero means SIGKILL.
	DeathSignal syscall.Signal
}

// Process is a server process started for tests.
type Process struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // valid once done is closed
}

// Start starts cmd (its Dir, Env and SysProcAttr as the caller set them),
// its output going to o.Log.
func Start(cmd *exec.Cmd, o Options) (*Process, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if o.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(o.Log, flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	sig := o.DeathSignal
	if sig == 0 {
		sig = syscall.SIGKILL
	}
	setDeathSignal(cmd, sig)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(cmd.Path), err)
	}
	p := &Process{cmd: cmd, log: o.Log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the process's program name.
func (p *Process) Name() string { return filepath.Base(p.cmd.Path) }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns how it ended.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// State is the process's exit state, nil while it runs.
func (p *Process) State() *os.ProcessState {
	select {
	case <-p.done:
		return p.cmd.ProcessState
	default:
		return nil
	}
}

// Stop sends sig and waits for the process to exit, killing it after
// wait; that it had to be killed is the error.
func (p *Process) Stop(sig os.Signal, wait time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(sig) // it may exit meanwhile; done says
	select {
	case <-p.done:
		return nil
	case <-time.After(wait):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not stop in %s; killed", p.Name(), wait)
}

// LogPath is the file the process writes to.
func (p *Process) LogPath() string { return p.log }

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string { return ReadTail(p.log, n) }

// ReadTail returns the last n bytes of the file path, or "" when it
// cannot be read.
func ReadTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
