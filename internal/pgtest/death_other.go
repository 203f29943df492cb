//go:build !linux

package pgtest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal is a no-op where the kernel has no parent-death signal;
// Close (through Main) stops the servers.
func setDeathSignal(*exec.Cmd, syscall.Signal) {}
