package handover

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/nstest"
)

// The segment exists only inside the test's namespaces. The cluster (gossip, Raft) and the backends are on
// IPv4 in every case; the VIP is IPv4 or IPv6 (a family).
const (
	subnet    = "10.216.0."
	clientIP  = subnet + "100"
	adminAddr = "127.0.0.1:7948"
	// drainTimeout is set explicitly, as an operator of a control plane would (watches end within minutes):
	// far longer than the test, so an exit at the timeout would show.
	drainTimeout = 2 * time.Minute
)

func nodeIP(i int) string    { return fmt.Sprintf("%s%d", subnet, 11+i) }
func backendIP(i int) string { return fmt.Sprintf("%s%d", subnet, 21+i) }

// family is the VIP's address family: its address and prefix, and for IPv6 the addresses the client and the
// nodes get on the segment besides their IPv4 ones (the VIP's holder answers NDP from them).
type family struct {
	name   string
	vip    string // the VIP with its prefix length, as -vip takes it
	client string // IPv6: the client's address with prefix; "" for IPv4
	node   func(i int) string
}

var (
	ipv4 = family{name: "IPv4", vip: subnet + "50/24"}
	ipv6 = family{name: "IPv6", vip: "fd00:216::50/64", client: "fd00:216::100/64",
		node: func(i int) string { return fmt.Sprintf("fd00:216::%d/64", 11+i) }}
)

// addr is the VIP's address with the frontend's port.
func (f family) addr() string {
	ip, _, _ := strings.Cut(f.vip, "/")
	return net.JoinHostPort(ip, "6443")
}

// plumb gives ns its IPv6 address (i: a node's index, -1: the client), or turns IPv6 off for an IPv4 VIP so
// that the namespace stays quiet. Addresses skip duplicate address detection: they are unique here, and a
// tentative address would delay the start.
func (f family) plumb(t *testing.T, ns *nstest.NS, i int) {
	t.Helper()
	if f.node == nil {
		ns.Sysctl(t, "net.ipv6.conf.all.disable_ipv6=1")
		return
	}
	a := f.client
	if i >= 0 {
		a = f.node(i)
	}
	ns.MustRun(t, "ip", "-6", "addr", "add", a, "dev", "eth0", "nodad")
}

// rig is the cluster and the namespaces around it.
type rig struct {
	t       *testing.T
	bin     string
	dir     string
	nodes   []*node
	fam     family
	client  *nstest.NS
	backend *backend
	formed  time.Time // when the cluster was first stable
}

// node is one load-balancer namespace running a vipd agent.
type node struct {
	name string
	ip   string
	ns   *nstest.NS
	args []string // the agent's command line, the same at every start
	log  string
	api  *http.Client

	mu    sync.Mutex
	agent *nstest.Process
}

// startCluster builds the segment — three nodes, a client, the backends — and starts a vipd agent in each
// node namespace, as an operator would: a cluster key made by `vipd keygen` in a 0600 file, the VIP (of fam) on eth0,
// two backends, -drain-timeout 2m, plus extra flags.
//
// The Raft timings are ten times the defaults (heartbeat and election 1 s, lease 500 ms), as an operator of
// VMs on a busy host would set them. With the defaults (lease 50 ms) the shared 2-core machine this test runs
// on, busy with the test's own thousands of connections and often with other suites, stalls a leader past its
// lease every few seconds: the leader steps down and the VIP moves unplanned, without a drain, which resets
// the connections — the failure hand-over drains do not cover and this test is not about. A planned move
// transfers leadership at once, so these timings do not slow the moves measured here.
func startCluster(t *testing.T, fam family, extra ...string) *rig {
	t.Helper()
	nstest.Require(t)
	if _, err := exec.LookPath("nft"); err != nil {
		// vipd programs nftables through netlink, not the nft tool; its absence only hints that the kernel
		// may lack nf_tables, which the agents would then report.
		t.Logf("no nft command: the agents need nf_tables in the kernel for hand-over drains")
	}
	r := &rig{t: t, bin: vipdBinary(t), dir: t.TempDir(), fam: fam}
	lan := nstest.NewLAN(t)
	r.client, _ = lan.Host(t, "c", "eth0", clientIP+"/24")
	fam.plumb(t, r.client, -1)
	beNS, _ := lan.Host(t, "b", "eth0", backendIP(0)+"/24", backendIP(1)+"/24")
	beNS.Sysctl(t, "net.ipv6.conf.all.disable_ipv6=1")
	nodeOf := map[string]string{}
	for i := range 3 {
		nodeOf[nodeIP(i)] = fmt.Sprintf("n%d", i+1)
	}
	r.backend = startBackends(t, beNS, func(a net.Addr) string {
		if n, ok := nodeOf[a.(*net.TCPAddr).IP.String()]; ok {
			return n
		}
		return "??"
	}, backendIP(0)+":8080", backendIP(1)+":8080")

	keyFile := filepath.Join(r.dir, "cluster.key")
	key, err := exec.Command(r.bin, "keygen").Output()
	if err != nil {
		t.Fatalf("vipd keygen: %v", err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	join := strings.Join([]string{nodeIP(0), nodeIP(1), nodeIP(2)}, ",")
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), ip: nodeIP(i)}
		n.ns, _ = lan.Host(t, n.name, "eth0", n.ip+"/24")
		fam.plumb(t, n.ns, i)
		n.api = &http.Client{
			Transport: &http.Transport{DialContext: n.ns.DialContext, DisableKeepAlives: true},
			Timeout:   2 * time.Second,
		}
		n.log = filepath.Join(r.dir, n.name+".log")
		n.args = append([]string{r.bin, "agent",
			"-node", n.name,
			"-bind", n.ip,
			"-data-dir", filepath.Join(r.dir, n.name),
			"-bootstrap-expect", "3",
			"-join", join,
			"-encrypt-file", keyFile,
			"-listen", ":6443",
			"-backend", backendIP(0) + ":8080," + backendIP(1) + ":8080",
			"-check-interval", "500ms", "-rise", "1", // only so that a (re)started node is ready sooner
			"-vip", fam.vip,
			"-interface", "eth0",
			"-http-addr", adminAddr,
			"-drain-timeout", drainTimeout.String(),
			"-raft-heartbeat", "1s", "-raft-election", "1s", "-raft-lease", "500ms",
		}, extra...)
		r.nodes = append(r.nodes, n)
	}
	for _, n := range r.nodes {
		n.start(t)
	}
	t.Cleanup(r.stopAll)
	t.Cleanup(func() { // runs first: shows the agents as the failure left them
		if t.Failed() {
			r.dumpLogs()
			if u := r.unplannedMoves(); len(u) > 0 {
				t.Logf("NOTE: %d unplanned elections (a stalled host?), which reset connections whatever the hand-over does:\n%s",
					len(u), strings.Join(u, "\n"))
			}
		}
	})
	return r
}

// start runs the node's agent (again, after a stop: same flags, same data dir, its log appended to).
func (n *node) start(t *testing.T) {
	t.Helper()
	p := nstest.StartProcess(t, n.ns, n.name, n.log, n.args...)
	n.mu.Lock()
	n.agent = p
	n.mu.Unlock()
}

func (n *node) proc() *nstest.Process {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.agent
}

func (n *node) running() bool { return n.proc().Running() }

// stopAll stops every agent at once, so that a cleanup does not wait for graceful leaves in turn (and kills
// one still draining after 5 s).
func (r *rig) stopAll() {
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		wg.Go(func() { _ = n.proc().Stop(5 * time.Second) })
	}
	wg.Wait()
}

// dumpLogs shows the end of every agent's log (a failed test) and keeps the whole logs in a directory the
// test's cleanup does not remove.
func (r *rig) dumpLogs() {
	keep, err := os.MkdirTemp("", "vipd-handover-logs-")
	if err == nil {
		for _, n := range r.nodes {
			if b, err := os.ReadFile(n.log); err == nil {
				_ = os.WriteFile(filepath.Join(keep, n.name+".log"), b, 0o600)
			}
		}
		r.t.Logf("the agents' whole logs are kept in %s", keep)
	}
	for _, n := range r.nodes {
		b, _ := os.ReadFile(n.log)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		r.t.Logf("last lines of %s's log (running: %v):\n%s", n.name, n.running(), strings.Join(lines, "\n"))
	}
}

// unplanned are the log messages of a leader that lost leadership without a planned move.
var unplanned = []string{`msg="failed to contact quorum of nodes, stepping down"`, `msg="leader verification failed: releasing the VIP"`,
	`msg="heartbeat timeout reached, starting election"`}

// unplannedMoves lists the log lines, of every node, that show an election nobody asked for after the
// cluster first formed: a stalled machine, not the moves under test. A failure names them, so that it is not
// mistaken for a hand-over bug.
func (r *rig) unplannedMoves() []string {
	var out []string
	for _, n := range r.nodes {
		for _, m := range unplanned {
			for _, l := range n.logLines(m) {
				ts, _, _ := strings.Cut(strings.TrimPrefix(l, "time="), " ")
				if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && !r.formed.IsZero() && at.After(r.formed) {
					out = append(out, n.name+": "+l)
				}
			}
		}
	}
	return out
}

// logLines returns the lines of the node's log (every run of it) that contain every sub.
func (n *node) logLines(subs ...string) []string {
	b, _ := os.ReadFile(n.log)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

func (n *node) status() (agent.StatusResponse, error) {
	var st agent.StatusResponse
	resp, err := n.api.Get("http://" + adminAddr + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /v1/status on %s: %s", n.name, resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// vipctl runs the vipd CLI inside the node's namespace against its admin API, as an operator on the node
// does, and returns its exit code and output.
func (n *node) vipctl(bin string, args ...string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.ns.Name, bin}, append(args, "-http-addr", adminAddr)...)...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return code, strings.TrimSpace(string(out))
}

// node returns the named node.
func (r *rig) node(name string) *node {
	for _, n := range r.nodes {
		if n.name == name {
			return n
		}
	}
	r.t.Fatalf("no node %s", name)
	return nil
}

// holder returns the node whose status says it holds the VIP, "" if none does or more than one says so
// (the running nodes only).
func (r *rig) holder() string {
	var hs []string
	for _, n := range r.nodes {
		if !n.running() {
			continue
		}
		if st, err := n.status(); err == nil && st.VIPHeld {
			hs = append(hs, n.name)
		}
	}
	if len(hs) != 1 {
		return ""
	}
	return hs[0]
}

// unstable says why the cluster is not steady ("" when it is): every agent running and healthy, one leader
// all agree on in one term, three voters everywhere, and the VIP held by the leader only. A draining node
// counts: it is still a member until its drain ends.
func (r *rig) unstable() string {
	var leader string
	var term uint64
	holders := 0
	for _, n := range r.nodes {
		if !n.running() {
			return n.name + " is not running"
		}
		st, err := n.status()
		switch {
		case err != nil:
			return err.Error()
		case st.Leader == "":
			return n.name + " knows no leader"
		case leader != "" && (st.Leader != leader || st.Term != term):
			return fmt.Sprintf("%s: leader %s in term %d, another node says %s in term %d", n.name, st.Leader, st.Term, leader, term)
		case st.Voters != 3:
			return fmt.Sprintf("%s sees %d voters", n.name, st.Voters)
		case !st.Healthy:
			return n.name + " is unhealthy: " + st.HealthReason
		case st.VIPHeld && st.Leader != n.name:
			return n.name + " holds the VIP but does not lead"
		}
		if st.VIPHeld {
			holders++
		}
		leader, term = st.Leader, st.Term
	}
	if holders != 1 {
		return fmt.Sprintf("%d nodes hold the VIP", holders)
	}
	return ""
}

// waitStable waits until the cluster has been steady for a second without a break and returns the holder.
func (r *rig) waitStable(timeout time.Duration) string {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var since time.Time
	for {
		why := r.unstable()
		switch {
		case why != "":
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= time.Second:
			if h := r.holder(); h != "" {
				if r.formed.IsZero() {
					r.formed = since
				}
				return h
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("cluster not stable after %v: %s", timeout, why)
		}
		time.Sleep(50 * time.Millisecond) // polling the agents' APIs, bounded by deadline
	}
}

// stop sends SIGTERM to the node's agent.
func (n *node) signalStop(t *testing.T) {
	t.Helper()
	if err := n.proc().Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", n.name, err)
	}
}
