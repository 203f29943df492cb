//go:build !linux

package testsvc

import (
	"os/exec"
	"syscall"
)

// setDeathSignal is a no-op where the kernel has no parent-death signal;
// the harnesses' Close (through their Main) stops the servers.
func setDeathSignal(*exec.Cmd, syscall.Signal) {}
