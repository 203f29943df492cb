package kubetest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill the server if this process dies
// without stopping it, so no control plane outlives a killed test.
func setDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
