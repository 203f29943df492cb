//go:build !linux

package kubetest

import "os/exec"

// setDeathSignal is a no-op where the kernel has no parent-death signal;
// Close (through Main) stops the servers.
func setDeathSignal(*exec.Cmd) {}
