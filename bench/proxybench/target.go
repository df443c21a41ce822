package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// target is one thing the load generator talks to: the backend itself, vipd, or HAProxy.
type target struct {
	name string
	addr string // host:port clients connect to
	pid  int    // process whose CPU, RSS and descriptors are measured; 0 = none (direct)
	stop func()
}

// targetKind starts a fresh instance of a target in front of the backends, on the given CPUs.
type targetKind struct {
	name  string
	skip  string // why this leg does not run, "" if it does
	start func(ctx context.Context, backends []string, cpus []int) (*target, error)
}

// proc is a started child; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// children tracks every process the harness starts so that they all die with it: on return from main, on a
// panic, on SIGINT/SIGTERM (main cancels and calls killAll), and through Pdeathsig if the harness is SIGKILLed.
type children struct {
	mu    sync.Mutex
	procs map[int]*proc
}

func newChildren() *children { return &children{procs: make(map[int]*proc)} }

// start runs argv pinned to cpus, with its output in logFile.
func (c *children) start(argv []string, cpus []int, logFile string) (*proc, error) {
	if _, err := exec.LookPath("taskset"); err == nil {
		list := make([]string, len(cpus))
		for i, cpu := range cpus {
			list[i] = fmt.Sprint(cpu)
		}
		argv = append([]string{"taskset", "-c", strings.Join(list, ",")}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	out.Close()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[cmd.Process.Pid] = p
	c.mu.Unlock()
	// Without taskset the exec'd program inherited the harness's CPU; move all its threads.
	if err := pinProcess(cmd.Process.Pid, cpus...); err != nil {
		c.stop(p)
		return nil, err
	}
	return p, nil
}

// stop asks the process to exit, and kills it if it has not within two seconds.
func (c *children) stop(p *proc) {
	pid := p.cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	c.mu.Lock()
	delete(c.procs, pid)
	c.mu.Unlock()
}

// killAll SIGKILLs every process still running; safe to call more than once.
func (c *children) killAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pid := range c.procs {
		syscall.Kill(-pid, syscall.SIGKILL)
		delete(c.procs, pid)
	}
}

// freePort returns a loopback port nobody listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitReady retries a full short-connection exchange through addr until one succeeds; the health checks of the
// proxy under test must first see the backends up.
func waitReady(ctx context.Context, addr string, p *proc, logFile string) error {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(logFile)
			return fmt.Errorf("%s exited before it was ready (%v); its output:\n%s", filepath.Base(p.cmd.Path), p.cmd.ProcessState, tail(log, 2000))
		default:
		}
		if last = exchange(addr, time.Second); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(logFile)
	return fmt.Errorf("%s not ready at %s after 15s (last error: %v); its output:\n%s", filepath.Base(p.cmd.Path), addr, last, tail(log, 2000))
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func directKind() targetKind {
	return targetKind{name: "direct", start: func(_ context.Context, backends []string, _ []int) (*target, error) {
		return &target{name: "direct", addr: backends[0], stop: func() {}}, nil
	}}
}

// vipdKind runs the agent of the vipd binary bin as target name (vipd, or vipd-base for a baseline binary).
func vipdKind(kids *children, name, bin, dir string) targetKind {
	k := targetKind{name: name}
	if _, err := os.Stat(bin); err != nil {
		k.skip = fmt.Sprintf("%s not built (go build -o %s ./cmd/vipd)", bin, bin)
		return k
	}
	k.start = func(ctx context.Context, backends []string, cpus []int) (*target, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		admin, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		logFile := filepath.Join(dir, name+".log")
		cmd, err := kids.start([]string{bin, "agent",
			"-listen", addr,
			"-backend", strings.Join(backends, ","),
			"-check", "tcp", "-check-interval", "1s", "-rise", "1",
			"-http-addr", fmt.Sprintf("127.0.0.1:%d", admin),
			"-log-level", "warn",
		}, cpus, logFile)
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, addr, cmd, logFile); err != nil {
			kids.stop(cmd)
			return nil, err
		}
		return &target{name: name, addr: addr, pid: cmd.cmd.Process.Pid, stop: func() { kids.stop(cmd) }}, nil
	}
	return k
}

// haproxyConfig is the comparison setup of issue 2: one thread per CPU it gets (nbthread 1 as in the issue, 2
// for the two-CPU test), TCP mode, round robin, kernel splicing, a connect check like vipd's, limits high
// enough for the idle and storm tests. Its listen backlog is HAProxy's default, maxconn, within somaxconn.
// maxpipes bounds the splice pipes (HAProxy reserves maxconn/4 by default): with the descriptor limit of this
// machine, the idle connections plus default pipes would not fit, and pipes are only in use while data moves.
func haproxyConfig(addr string, backends []string, threads, maxconn, maxpipes int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    nbthread %d
    maxconn %d
    maxpipes %d

defaults
    mode tcp
    option splice-auto
    maxconn %d
    timeout connect 5s
    timeout client 10m
    timeout server 10m

frontend bench
    bind %s
    default_backend upstreams

backend upstreams
    balance roundrobin
`, threads, maxconn, maxpipes, maxconn, addr)
	for i, be := range backends {
		fmt.Fprintf(&b, "    server b%d %s check inter 1s rise 1\n", i, be)
	}
	return b.String()
}

func haproxyKind(kids *children, dir string, maxconn, maxpipes int) targetKind {
	k := targetKind{name: "haproxy"}
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		k.skip = "haproxy not on PATH (apt-get install -y haproxy)"
		return k
	}
	k.start = func(ctx context.Context, backends []string, cpus []int) (*target, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(haproxyConfig(addr, backends, len(cpus), maxconn, maxpipes)), 0o644); err != nil {
			return nil, err
		}
		logFile := filepath.Join(dir, "haproxy.log")
		// -db: stay in the foreground, one process, so its PID is the one to measure.
		cmd, err := kids.start([]string{bin, "-db", "-f", cfg}, cpus, logFile)
		if err != nil {
			return nil, err
		}
		if err := waitReady(ctx, addr, cmd, logFile); err != nil {
			kids.stop(cmd)
			return nil, err
		}
		return &target{name: "haproxy", addr: addr, pid: cmd.cmd.Process.Pid, stop: func() { kids.stop(cmd) }}, nil
	}
	return k
}
