package nstest

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Process is a child process running inside a namespace.
type Process struct {
	proc *os.Process
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// StartProcess runs argv inside n with stdout and stderr appended to logPath. The kernel kills it if this
// process dies (Pdeathsig), so a test killed by its timeout leaves no agent behind; t.Cleanup stops it with
// SIGTERM, then SIGKILL after 5 s.
func StartProcess(t testing.TB, n *NS, name, logPath string, argv ...string) *Process {
	t.Helper()
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatalf("log of %s: %v", name, err)
	}
	defer out.Close()
	fmt.Fprintf(out, "=== %s in %s: %s\n", time.Now().Format(time.RFC3339Nano), n.Name, strings.Join(argv, " "))
	cmd := n.Command(argv...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{proc: cmd.Process, done: make(chan struct{})}
	go func() { // owned by p: ends when the process does, which Cleanup guarantees
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Exited is closed when the process has exited; Err then says how.
func (p *Process) Exited() <-chan struct{} { return p.done }

// Err is the process's exit status once Exited is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.proc.Signal(sig) }

// Stop sends SIGTERM and waits up to grace for the exit, then kills; it returns how the process ended.
func (p *Process) Stop(grace time.Duration) error {
	if p.Running() {
		_ = p.proc.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.proc.Kill()
			<-p.done
		}
	}
	return p.err
}

// Pid is the process id.
func (p *Process) Pid() int { return p.proc.Pid }
