package testsvc

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel send sig to the server if this process
// dies without stopping it, so no server outlives a killed test.
func setDeathSignal(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
}
