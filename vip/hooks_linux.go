package vip

import (
	"os/exec"
	"syscall"
)

// setProcessGroup puts the hook in its own process group and makes a timeout kill the whole group,
// so a hook's background children cannot outlive it.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
