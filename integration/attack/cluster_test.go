package attack

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vipd/vipd/agent"
	"github.com/vipd/vipd/internal/nstest"
)

// The segment exists only inside the test's namespaces: nothing outside them ever sees it.
const (
	subnet      = "10.214.0."
	vipAddr     = subnet + "50"
	attackerIP  = subnet + "66"
	clientIP    = subnet + "100"
	adminAddr   = "127.0.0.1:7948"
	backendAddr = "127.0.0.1:8080"
	raftPort    = "7947"
	gossipPort  = "7946"
)

func nodeIP(i int) string { return fmt.Sprintf("%s%d", subnet, 11+i) }

// security is how the cluster's agents authenticate each other.
type security string

const (
	withKey  security = "key"
	insecure security = "insecure"
)

// rig is the cluster under attack and the namespaces around it.
type rig struct {
	t        *testing.T
	dir      string
	mode     security
	key      []byte
	nodes    []*node
	attacker *nstest.NS
	client   *nstest.NS
	clientIf *net.Interface
}

// node is one load-balancer namespace: a backend, a vipd agent, and the test's views of both.
type node struct {
	name  string
	ip    string
	ns    *nstest.NS
	mac   net.HardwareAddr // of eth0, the address the VIP's holder answers ARP with
	nl    *netlink.Handle
	lo    netlink.Link
	agent *nstest.Process
	log   string
	api   *http.Client
}

// startCluster builds the segment (three nodes, an attacker, a client) and starts a real vipd agent in each
// node namespace, with a cluster key (0600 file) or -insecure, default Raft timings, and the VIP on eth0.
func startCluster(t *testing.T, mode security) *rig {
	t.Helper()
	nstest.Require(t)
	nstest.RemoveStale()
	bin := vipdBinary(t)
	r := &rig{t: t, dir: t.TempDir(), mode: mode}
	lan := nstest.NewLAN(t)
	r.attacker, _ = lan.Host(t, "x", "eth0", attackerIP+"/24")
	r.client, r.clientIf = lan.Host(t, "c", "eth0", clientIP+"/24")
	// The attacker's and the client's own kernels stay quiet: no IPv6 chatter, no ARP answers of theirs.
	r.attacker.Sysctl(t, "net.ipv6.conf.all.disable_ipv6=1")
	r.client.Sysctl(t, "net.ipv6.conf.all.disable_ipv6=1")

	var keyFlags []string
	switch mode {
	case withKey:
		r.key = randomKey(t)
		path := filepath.Join(r.dir, "cluster.key")
		if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(r.key)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		keyFlags = []string{"-encrypt-file", path}
	case insecure:
		keyFlags = []string{"-insecure"}
	}
	var join []string
	for i := range 3 {
		join = append(join, nodeIP(i))
	}
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), ip: nodeIP(i)}
		var ifi *net.Interface
		n.ns, ifi = lan.Host(t, n.name, "eth0", n.ip+"/24")
		n.mac = ifi.HardwareAddr
		n.ns.Sysctl(t, "net.ipv6.conf.all.disable_ipv6=1")
		n.nl = n.ns.Netlink(t)
		lo, err := n.nl.LinkByName("lo")
		if err != nil {
			t.Fatalf("lo of %s: %v", n.name, err)
		}
		n.lo = lo
		startBackend(t, n)
		n.api = &http.Client{
			Transport: &http.Transport{DialContext: n.ns.DialContext, DisableKeepAlives: true},
			Timeout:   2 * time.Second,
		}
		n.log = filepath.Join(r.dir, n.name+".log")
		args := []string{bin, "agent",
			"-node", n.name,
			"-bind", n.ip,
			"-data-dir", filepath.Join(r.dir, n.name),
			"-bootstrap-expect", "3",
			"-join", strings.Join(join, ","),
			"-backend", backendAddr,
			"-check-interval", "500ms", "-rise", "1", // health, not Raft: only so the cluster is ready sooner
			"-vip", vipAddr + "/24",
			"-interface", "eth0",
			"-http-addr", adminAddr,
		}
		n.agent = nstest.StartProcess(t, n.ns, n.name, n.log, append(args, keyFlags...)...)
		r.nodes = append(r.nodes, n)
	}
	t.Cleanup(func() { r.stopAll(5 * time.Second) })
	t.Cleanup(func() { // runs first: shows the agents as the failure left them
		if t.Failed() {
			r.dumpLogs()
		}
	})
	return r
}

func randomKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// startBackend runs a TCP server on the node's loopback for the agent's health checks and proxy: it accepts
// and closes. Its goroutine ends when Cleanup closes the listener.
func startBackend(t *testing.T, n *node) {
	t.Helper()
	ln, err := n.ns.Listen("tcp", backendAddr)
	if err != nil {
		t.Fatalf("backend in %s: %v", n.name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// dumpLogs shows the end of every agent's log (a failed test).
func (r *rig) dumpLogs() {
	for _, n := range r.nodes {
		b, _ := os.ReadFile(n.log)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		r.t.Logf("last lines of %s's log (running: %v):\n%s", n.name, n.agent.Running(), strings.Join(lines, "\n"))
	}
}

// get reads path from the node's admin API into v, as the vipd CLI does.
func (n *node) get(path string, v any) error {
	resp, err := n.api.Get("http://" + adminAddr + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s", path, n.name, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (n *node) status() (agent.StatusResponse, error) {
	var s agent.StatusResponse
	return s, n.get("/v1/status", &s)
}

func (n *node) members() (agent.MembersResponse, error) {
	var m agent.MembersResponse
	return m, n.get("/v1/members", &m)
}

// holdsVIP reports whether the VIP is on the node's lo, where vipd puts it.
func (n *node) holdsVIP() (bool, error) {
	addrs, err := n.nl.AddrList(n.lo, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IP.String() == vipAddr {
			return true, nil
		}
	}
	return false, nil
}

// view is what must not change under attack, as the admin API and the kernel show it.
type view struct {
	leader  string            // the leader every node names ("" if they disagree)
	terms   map[string]uint64 // each node's term
	voters  map[string]int    // each node's count of voters
	members map[string]string // each node's member list: name/status/role, sorted
	holders []string          // nodes with the VIP on lo
}

func (v view) String() string {
	return fmt.Sprintf("leader %q, terms %v, voters %v, VIP on %v, members %v", v.leader, v.terms, v.voters, v.holders, v.members)
}

func (v view) equal(o view) bool {
	return v.leader == o.leader && fmt.Sprint(v.terms) == fmt.Sprint(o.terms) && fmt.Sprint(v.voters) == fmt.Sprint(o.voters) &&
		fmt.Sprint(v.members) == fmt.Sprint(o.members) && slices.Equal(v.holders, o.holders)
}

// look takes the view; an error is a node that did not answer.
func (r *rig) look() (view, error) {
	v := view{terms: map[string]uint64{}, voters: map[string]int{}, members: map[string]string{}}
	for i, n := range r.nodes {
		st, err := n.status()
		if err != nil {
			return v, err
		}
		ms, err := n.members()
		if err != nil {
			return v, err
		}
		switch {
		case i == 0:
			v.leader = st.Leader
		case st.Leader != v.leader:
			v.leader = ""
		}
		v.terms[n.name], v.voters[n.name] = st.Term, st.Voters
		var rows []string
		for _, m := range ms.Members {
			rows = append(rows, m.Name+"/"+m.Status+"/"+m.Role)
		}
		slices.Sort(rows)
		v.members[n.name] = strings.Join(rows, ",")
		held, err := n.holdsVIP()
		if err != nil {
			return v, err
		}
		if held {
			v.holders = append(v.holders, n.name)
		}
	}
	return v, nil
}

// unstable says why the cluster is not in the steady state an attack must find it in ("" when it is): every
// agent running and healthy, one leader all agree on in one term, three voters and three alive members
// everywhere, and the VIP on the leader's lo only.
func (r *rig) unstable() string {
	var leader string
	var term uint64
	for _, n := range r.nodes {
		if !n.agent.Running() {
			return n.name + ": agent exited: " + fmt.Sprint(n.agent.Err())
		}
		st, err := n.status()
		if err != nil {
			return err.Error()
		}
		ms, err := n.members()
		if err != nil {
			return err.Error()
		}
		alive := 0
		for _, m := range ms.Members {
			if m.Status == "alive" && (m.Role == "leader" || m.Role == "follower") {
				alive++
			}
		}
		switch {
		case st.Leader == "":
			return n.name + " knows no leader"
		case leader != "" && (st.Leader != leader || st.Term != term):
			return fmt.Sprintf("%s: leader %s in term %d, another node says %s in term %d", n.name, st.Leader, st.Term, leader, term)
		case st.Voters != 3:
			return fmt.Sprintf("%s sees %d voters", n.name, st.Voters)
		case alive != 3 || len(ms.Members) != 3:
			return fmt.Sprintf("%s lists %d members, %d of them alive voters", n.name, len(ms.Members), alive)
		case !st.Healthy:
			return n.name + " is unhealthy: " + st.HealthReason
		}
		leader, term = st.Leader, st.Term
	}
	var holders []string
	for _, n := range r.nodes {
		held, err := n.holdsVIP()
		if err != nil {
			return err.Error()
		}
		if held {
			holders = append(holders, n.name)
		}
	}
	if len(holders) != 1 || holders[0] != leader {
		return fmt.Sprintf("VIP on the lo of %v, leader %s", holders, leader)
	}
	return ""
}

// waitStable waits until the cluster has been in the steady state for hold without a break, and returns the
// view then. Attacks start from there, as faults find production clusters: formation, the first hand-offs
// and the warm spare connections are over.
func (r *rig) waitStable(hold, timeout time.Duration) view {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	var since time.Time
	var first view
	for {
		why := r.unstable()
		if why == "" {
			v, err := r.look()
			switch {
			case err != nil:
				why = err.Error()
			case since.IsZero():
				since, first = time.Now(), v
			case !v.equal(first):
				why = fmt.Sprintf("changed: %v -> %v", first, v)
			case time.Since(since) >= hold:
				return v
			}
		}
		if why != "" {
			since = time.Time{}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("cluster not stable after %v: %s", timeout, why)
		}
		time.Sleep(100 * time.Millisecond) // polling the agents' APIs, not waiting for a fixed time
	}
}

// node returns the named node.
func (r *rig) node(name string) *node {
	for _, n := range r.nodes {
		if n.name == name {
			return n
		}
	}
	return nil
}

// refused sums every node's count of refused peers and RPCs.
func (r *rig) refused() map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range r.nodes {
		if st, err := n.status(); err == nil {
			out[n.name] = st.Refused
		}
	}
	return out
}

// errNotRunning marks an agent that exited.
var errNotRunning = errors.New("agent not running")

// running returns an error naming every agent that exited, and how.
func (r *rig) running() error {
	var errs []error
	for _, n := range r.nodes {
		if !n.agent.Running() {
			errs = append(errs, fmt.Errorf("%s: %w: %v", n.name, errNotRunning, n.agent.Err()))
		}
	}
	return errors.Join(errs...)
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// stopAll stops every agent at once (SIGTERM, then SIGKILL after grace), so that a cleanup does not wait for
// three graceful leaves in turn; the agents' own cleanups then find them stopped.
func (r *rig) stopAll(grace time.Duration) {
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		wg.Go(func() { _ = n.agent.Stop(grace) })
	}
	wg.Wait()
}

// stepDown is a leader giving up because no quorum answered it in time — what a leader that was not
// scheduled for longer than the lease does when it runs again: Raft's lease step-down, or the VIP loop's
// failed verification of leadership (which releases the VIP).
type stepDown struct {
	node string
	at   time.Time
}

// lostQuorum are the log messages of a stepDown.
var lostQuorum = []string{`msg="failed to contact quorum of nodes, stepping down"`, `msg="leader verification failed: releasing the VIP"`}

// stepDowns reads every agent's log for step-downs.
func (r *rig) stepDowns() []stepDown {
	var out []stepDown
	for _, n := range r.nodes {
		b, err := os.ReadFile(n.log)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !slices.ContainsFunc(lostQuorum, func(m string) bool { return strings.Contains(line, m) }) {
				continue
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil {
				out = append(out, stepDown{node: n.name, at: at})
			}
		}
	}
	return out
}
