package attack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/nstest"
	"github.com/vipd/vipd/internal/rogue"
)

// The attacker process: this test binary, re-executed inside the attacker's namespace with its role and its
// orders (JSON) in the environment. It prints "ATTACK-READY" once it is attacking (the long-running roles)
// and "ATTACK-REPORT <json>" with what it sent and what it got back; SIGUSR1 ends a long-running role.

const (
	roleEnv = "VIPD_ATTACK_ROLE"
	specEnv = "VIPD_ATTACK_SPEC"

	roleRaft   = "raft"
	roleGossip = "gossip"
	roleFlood  = "flood"
)

// raftSpec: send every Raft RPC to every target through every kind of stranger's connection.
type raftSpec struct {
	Targets []target
	// WrongKey is the key the "wrong key" stranger proves (not the cluster's).
	WrongKey []byte
	// ForeignID and ForeignAddr are the voter the configuration-changing RPCs install.
	ForeignID, ForeignAddr string
}

type target struct{ Name, Addr string }

// rpcResult is what one RPC got; Err is "" when the target answered.
type rpcResult struct {
	Dialer, RPC, Target string
	Term, LastLog       uint64
	Success             bool
	Err                 string
}

func (r rpcResult) learned() bool {
	return rogue.Result{Term: r.Term, LastLog: r.LastLog, Success: r.Success}.Learned()
}

func (r rpcResult) String() string {
	if r.Err != "" {
		return fmt.Sprintf("%s %s → %s: refused (%s)", r.Dialer, r.RPC, r.Target, r.Err)
	}
	return fmt.Sprintf("%s %s → %s: answered term=%d last_log=%d success=%v", r.Dialer, r.RPC, r.Target, r.Term, r.LastLog, r.Success)
}

// gossipSpec: start a foreign memberlist node per entry of Rogues, each joining Nodes, until SIGUSR1 or
// Duration.
type gossipSpec struct {
	Nodes    []string // the real nodes' gossip host:port
	Bind     string   // the attacker's IP
	RaftAddr string   // the Raft address the rogues claim
	Rogues   []rogueSpec
	Duration time.Duration
}

type rogueSpec struct {
	Name string
	Port int
	Key  []byte // nil: plain gossip
}

type gossipReport struct{ Rogues []rogueSeen }

func (g rogueSeen) String() string {
	if g.JoinErr != "" {
		return fmt.Sprintf("%s: join answered by %d (%s), it learned %v", g.Name, g.Joined, strings.Join(strings.Fields(g.JoinErr), " "), g.Saw)
	}
	return fmt.Sprintf("%s: join answered by %d, it learned %v", g.Name, g.Joined, g.Saw)
}

// rogueSeen is what one rogue gossip node got: how many nodes answered its join, and whom it saw.
type rogueSeen struct {
	Name    string
	Joined  int
	JoinErr string
	Saw     []string // member names it learned, itself excluded
}

func attackerMain(role string) int {
	var err error
	spec := []byte(os.Getenv(specEnv))
	switch role {
	case roleRaft:
		err = raftAttack(spec)
	case roleGossip:
		err = gossipAttack(spec)
	case roleFlood:
		err = floodAttack(spec)
	case roleStallProbe:
		err = stallProbe(spec)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", role+":", err)
		return 1
	}
	return 0
}

func report(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Printf("ATTACK-REPORT %s\n", b)
	return nil
}

// untilSignal returns a context cancelled by SIGUSR1 or after d.
func untilSignal(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGUSR1)
	return ctx, func() { stop(); cancel() }
}

func raftAttack(raw []byte) error {
	var spec raftSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	dialers := []struct {
		name      string
		handshake func(net.Conn) (net.Conn, error)
	}{
		{"plain", nil},
		{"wrong key", rogue.KeyProofHandshake("intruder", spec.WrongKey)},
		{"TLS without key", rogue.TLSHandshake(&tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})}, //nolint:gosec // the attacker
	}
	var out []rpcResult
	for _, d := range dialers {
		a := &rogue.Attacker{Dialer: rogue.Dialer{Handshake: d.handshake, Timeout: 2 * time.Second},
			ID: spec.ForeignID, Addr: spec.ForeignAddr}
		for _, tg := range spec.Targets {
			add := func(rpc string, r rogue.Result) {
				res := rpcResult{Dialer: d.name, RPC: rpc, Target: tg.Name, Term: r.Term, LastLog: r.LastLog, Success: r.Success}
				if r.Err != nil {
					res.Err = r.Err.Error()
				}
				out = append(out, res)
			}
			add("probe (AppendEntries term 0)", a.Probe(tg.Addr))
			add("RequestPreVote", a.RequestPreVote(tg.Addr, 1000))
			add("RequestVote", a.RequestVote(tg.Addr, 1000))
			add("TimeoutNow", a.TimeoutNow(tg.Addr))
			add("InstallSnapshot", a.InstallSnapshot(tg.Addr, 0, spec.ForeignID, spec.ForeignAddr, []byte("{}")))
			add("AppendEntries with a configuration (wedge)", a.Wedge(tg.Addr, spec.ForeignID, spec.ForeignAddr))
		}
	}
	return report(out)
}

func gossipAttack(raw []byte) error {
	var spec gossipSpec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	ctx, stop := untilSignal(spec.Duration)
	defer stop()
	var nodes []*rogue.GossipNode
	defer func() {
		for _, n := range nodes {
			_ = n.Shutdown()
		}
	}()
	rep := gossipReport{}
	for _, r := range spec.Rogues {
		n, err := rogue.StartGossip(rogue.GossipConfig{Name: r.Name, BindAddr: spec.Bind, Port: r.Port, Key: r.Key,
			Meta: rogue.ClaimMeta(spec.RaftAddr)})
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		seen := rogueSeen{Name: r.Name}
		seen.Joined, err = n.Join(spec.Nodes...)
		if err != nil {
			seen.JoinErr = err.Error()
		}
		rep.Rogues = append(rep.Rogues, seen)
	}
	fmt.Println("ATTACK-READY")
	<-ctx.Done()
	for i, n := range nodes {
		for _, m := range n.Members() {
			if m != rep.Rogues[i].Name {
				rep.Rogues[i].Saw = append(rep.Rogues[i].Saw, m)
			}
		}
	}
	return report(rep)
}

func floodAttack(raw []byte) error {
	var spec rogue.ARPFlood
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	ctx, stop := untilSignal(spec.Duration)
	defer stop()
	rep, err := spec.Run(ctx, func() { fmt.Println("ATTACK-READY") })
	if err != nil {
		return err
	}
	return report(rep)
}

// attackerProc is the parent's handle on an attacker (or probe) process.
type attackerProc struct {
	role    string
	cmd     *exec.Cmd
	ready   chan struct{}
	reports chan []byte
	wg      sync.WaitGroup
	stdout  strings.Builder // guarded by wg: read only after wg.Wait
	stderr  bytes.Buffer
	waited  bool

	// onEvent, if set before the process starts printing, receives every "ATTACK-EVENT <json>" line as it
	// comes (on the reading goroutine).
	onEvent func([]byte)
}

// startAttacker starts role in ns with spec; t.Cleanup kills it if the test did not finish it. onEvent, if
// not nil, receives the process's events as they come.
func startAttacker(t *testing.T, ns *nstest.NS, role string, spec any, onEvent func([]byte)) *attackerProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	a := &attackerProc{role: role, cmd: ns.Command(exe), ready: make(chan struct{}), reports: make(chan []byte, 1), onEvent: onEvent}
	a.cmd.Env = append(os.Environ(), roleEnv+"="+role, specEnv+"="+string(b))
	a.cmd.Stderr = &a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start the %s attacker: %v", role, err)
	}
	a.wg.Add(1)
	go func() { // owned by a: ends at the process's EOF, which finish or Cleanup brings
		defer a.wg.Done()
		defer close(a.reports)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			a.stdout.WriteString(line + "\n")
			switch {
			case line == "ATTACK-READY":
				close(a.ready)
			case strings.HasPrefix(line, "ATTACK-REPORT "):
				a.reports <- []byte(strings.TrimPrefix(line, "ATTACK-REPORT "))
			case strings.HasPrefix(line, "ATTACK-EVENT ") && a.onEvent != nil:
				a.onEvent([]byte(strings.TrimPrefix(line, "ATTACK-EVENT ")))
			}
		}
	}()
	t.Cleanup(func() {
		if !a.waited {
			_ = a.cmd.Process.Kill()
			a.wait()
		}
	})
	return a
}

func (a *attackerProc) wait() error {
	a.wg.Wait()
	a.waited = true
	return a.cmd.Wait()
}

// waitReady waits until the attacker is attacking.
func (a *attackerProc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-a.ready:
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
		a.wait()
		t.Fatalf("the %s attacker did not start within %v: %s", a.role, timeout, a.stderr.String())
	}
}

// finish ends a long-running attacker (stop) or waits up to timeout for one that ends by itself, and
// decodes its report.
func (a *attackerProc) finish(t *testing.T, stop bool, timeout time.Duration, into any) {
	t.Helper()
	if stop {
		_ = a.cmd.Process.Signal(syscall.SIGUSR1)
	}
	var raw []byte
	ok := false
	select {
	case raw, ok = <-a.reports:
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
	}
	err := a.wait()
	if err != nil || !ok {
		t.Fatalf("the %s attacker: %v (report: %v)\nstdout: %s\nstderr: %s", a.role, err, ok, a.stdout.String(), a.stderr.String())
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("the %s attacker's report: %v", a.role, err)
	}
}
