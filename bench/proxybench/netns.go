package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

// envInNetns marks the re-executed harness running inside its private network namespace.
const envInNetns = "PROXYBENCH_IN_NETNS"

// inPrivateNetns re-runs the harness in a fresh network namespace when it can (root) and has not already.
// A fresh namespace has its own loopback, ephemeral ports and TIME_WAIT sockets, and no conntrack (no rules
// need it), so a shared machine's conntrack table filling up with other tests' loopback connections cannot
// drop our SYNs, and our hundred thousand short connections do not fill it for others. The namespace dies with
// the child. Returns (exit code, true) when this process was only the launcher.
func inPrivateNetns() (int, bool) {
	if os.Getenv(envInNetns) != "" {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "proxybench: bring up lo in the private namespace: %v: %s\n", err, out)
			os.Exit(1)
		}
		return 0, false
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "proxybench: not root: running in the current network namespace (conntrack and other load may skew figures)")
		return 0, false
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envInNetns+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// The child gets SIGINT from the terminal itself; forward SIGTERM, which may be aimed at us alone.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench: start in a private network namespace: %v (running in the current one)\n", err)
		return 0, false
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		return 1, true
	}
	return 0, true
}
