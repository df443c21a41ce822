package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// raftSetting is one set of Raft timeouts the scenarios run under; zero values keep vipd's defaults.
type raftSetting struct {
	name                       string
	heartbeat, election, lease time.Duration
}

// proc is a child process; done closes when it has exited.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// procs starts children and kills whatever is left on exit (Pdeathsig covers a SIGKILLed harness).
type procs struct {
	mu  sync.Mutex
	all map[*proc]struct{}
}

func (ps *procs) start(logFile string, argv ...string) (*proc, error) {
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	fmt.Fprintf(out, "\n=== %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(argv, " "))
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.all[p] = struct{}{}
	ps.mu.Unlock()
	return p, nil
}

// signal sends sig and, when wait > 0, waits that long for the exit before SIGKILL.
func (ps *procs) signal(p *proc, sig syscall.Signal, wait time.Duration) {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	if wait > 0 {
		select {
		case <-p.done:
		case <-time.After(wait):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
	ps.mu.Lock()
	delete(ps.all, p)
	ps.mu.Unlock()
}

func (ps *procs) killAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for p := range ps.all {
		p.cmd.Process.Kill()
		delete(ps.all, p)
	}
}

// node is one load-balancer namespace: a backend and a vipd agent.
type node struct {
	name    string
	idx     int
	vipd    *proc
	backend *proc
}

// cluster runs three vipd agents in the node namespaces.
type cluster struct {
	t       *topo
	ps      *procs
	vipdBin string
	self    string
	dir     string
	setting raftSetting
	sec     security
	nodes   []*node
}

func (c *cluster) node(name string) *node {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

func (c *cluster) startBackend(n *node) error {
	p, err := c.ps.start(filepath.Join(c.dir, n.name+".backend.log"),
		"ip", "netns", "exec", c.t.ns(n.name), c.self, "backend",
		"-listen", fmt.Sprintf("127.0.0.1:%d", backendPort), "-name", n.name)
	n.backend = p
	return err
}

func (c *cluster) startVipd(n *node) error {
	var join []string
	for i := range c.t.nodes {
		join = append(join, c.t.nodeIP(i))
	}
	args := []string{"ip", "netns", "exec", c.t.ns(n.name), c.vipdBin, "agent",
		"-node", n.name,
		"-bind", c.t.nodeIP(n.idx),
		"-data-dir", filepath.Join(c.dir, c.setting.name, n.name),
		"-bootstrap-expect", "3",
		"-join", strings.Join(join, ","),
		"-listen", fmt.Sprintf(":%d", proxyPort),
		"-backend", fmt.Sprintf("127.0.0.1:%d", backendPort),
		"-check", "tcp", "-check-interval", "200ms", "-rise", "1", "-fall", "2",
		"-vip", fmt.Sprintf("%s/%d", vipAddr, vipPrefixLen),
		"-interface", "eth0",
		"-http-addr", adminAddr,
	}
	if s := c.setting; s.heartbeat > 0 {
		args = append(args, "-raft-heartbeat", s.heartbeat.String(), "-raft-election", s.election.String(),
			"-raft-lease", s.lease.String())
	}
	args = append(args, c.sec.flags(n.name)...)
	args = append(args, extraFlags...)
	p, err := c.ps.start(filepath.Join(c.dir, n.name+".vipd.log"), args...)
	n.vipd = p
	return err
}

// start brings up backends and agents with fresh data directories.
func (c *cluster) start() error {
	for i, name := range c.t.nodes {
		n := &node{name: name, idx: i}
		c.nodes = append(c.nodes, n)
		if err := os.MkdirAll(filepath.Join(c.dir, c.setting.name, name), 0o755); err != nil {
			return err
		}
		if err := c.startBackend(n); err != nil {
			return err
		}
		if err := c.startVipd(n); err != nil {
			return err
		}
	}
	return nil
}

// stop ends every agent and backend of the cluster gracefully.
func (c *cluster) stop() {
	for _, n := range c.nodes {
		c.ps.signal(n.vipd, syscall.SIGTERM, 5*time.Second)
		c.ps.signal(n.backend, syscall.SIGKILL, time.Second)
	}
	c.nodes = nil
}

// waitStable waits until every agent runs and agrees on one healthy leader that alone has the VIP on lo, and
// the client's probes have all reached that leader for hold; it returns the leader.
func (c *cluster) waitStable(ctx context.Context, obs *observer, lo *loWatch, hold, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	var why string
	var stableSince time.Time
	var leader string
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		why = c.unstable(obs, lo, &leader)
		if why != "" {
			stableSince = time.Time{}
		} else if stableSince.IsZero() {
			stableSince = time.Now()
		} else if time.Since(stableSince) >= hold {
			return leader, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", fmt.Errorf("cluster not stable after %s: %s", timeout, why)
}

func (c *cluster) unstable(obs *observer, lo *loWatch, leader *string) string {
	*leader = ""
	for _, n := range c.nodes {
		if n.vipd == nil || !n.vipd.alive() {
			return n.name + ": vipd not running"
		}
		if n.backend == nil || !n.backend.alive() {
			return n.name + ": backend not running"
		}
		st, err := getStatus(c.t.ns(n.name))
		if err != nil {
			return fmt.Sprintf("%s: status: %v", n.name, err)
		}
		switch {
		case st.Leader == "":
			return n.name + " knows no leader"
		case *leader != "" && st.Leader != *leader:
			return fmt.Sprintf("%s says leader %s, another says %s", n.name, st.Leader, *leader)
		case st.Voters != len(c.nodes):
			return fmt.Sprintf("%s sees %d voters", n.name, st.Voters)
		case !st.Healthy:
			return n.name + " unhealthy"
		}
		*leader = st.Leader
	}
	if h := lo.holders(); len(h) != 1 || h[0] != *leader {
		return fmt.Sprintf("VIP on lo of %v, leader %s", h, *leader)
	}
	now := time.Now()
	w, err := obs.window(now.Add(-300*time.Millisecond), now.Add(-60*time.Millisecond))
	if err != nil {
		return err.Error()
	}
	if len(w.Samples) < 10 {
		return fmt.Sprintf("only %d probes in 240 ms", len(w.Samples))
	}
	for _, s := range w.Samples {
		if !s.OK || s.Backend != *leader {
			return fmt.Sprintf("probe: ok=%v backend=%q err=%s", s.OK, s.Backend, s.Err)
		}
	}
	return ""
}
