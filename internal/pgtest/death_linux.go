package pgtest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel send sig to the server if this process
// dies without closing the cluster, so no server outlives a killed test.
func setDeathSignal(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
}
