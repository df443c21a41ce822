package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip"
	"github.com/vipd/vipd/vip/viptest"
)

// The VIP of the real-Raft cluster tests: a documentation prefix (RFC 5737) that only ever lives in the
// FakeNetwork, never on a real interface.
var (
	clusterVIP = netip.MustParsePrefix("192.0.2.50/24")
	clusterIP  = clusterVIP.Addr()
)

// Timings of the real-Raft cluster tests: twice the cluster package's defaults (heartbeat 200 ms, election
// 200 ms, lease 100 ms: the same ratios, so the same safety argument), from which the Manager derives its
// verification and answer window as the agent does, and a short refresh so the level check and the health
// re-check run several times per test.
//
// Why not the defaults: on two cores shared with other builds, this process is stalled now and then for
// 50-110 ms even at the agent's nice -10 (with and without -race), longer than the default 50 ms lease, so a
// leader steps down for nothing ("failed to contact quorum of nodes, stepping down") and a check that the
// VIP stays put fails on an election vipd did not cause: 8 failed tests in 8 runs of the suite at the
// defaults, 1 at twice them (load 5-9). cluster/config.go records the same trade-off for the product's
// defaults; the FakeNetwork invariant is checked the same either way.
const (
	clusterHeartbeat   = 2 * cluster.DefaultHeartbeat
	clusterElection    = 2 * cluster.DefaultElection
	clusterLease       = 2 * cluster.DefaultLease
	clusterGARPRefresh = 200 * time.Millisecond
)

// clusterLogger returns a logger writing to t.Log (shown only on failure) at level lv, or Debug when
// VIPD_TEST_DEBUG is set.
func clusterLogger(t testing.TB, lv slog.Level) *slog.Logger {
	return testutil.NewLogSink(t).Logger(lv)
}

// vipNode is one in-process vipd node: a real cluster.Cluster, a vip.Manager on the shared FakeNetwork, a
// settable health source and the goroutine that gossips health and VIP state, as the agent does.
type vipNode struct {
	name, ip string
	c        *cluster.Cluster
	m        *vip.Manager
	health   *viptest.FakeHealth
	kernel   *viptest.FakeKernel
	events   *viptest.EventLog
	part     *cluster.Partition // cuts this node's cluster traffic to chosen peers

	cancel  context.CancelFunc
	done    chan struct{} // closed when Run and the publisher have both returned
	runErr  error         // Run's result, valid after done
	stopped bool          // manager stopped (only the test goroutine touches it)
	down    bool          // cluster shut down or left
}

// acquisitions counts how often this node's Manager added the VIP.
func (n *vipNode) acquisitions() int {
	c := 0
	for _, e := range n.events.Events() {
		if e == "kernel:add "+clusterIP.String() {
			c++
		}
	}
	return c
}

// vipCluster is n vipNodes forming one Raft cluster on loopback.
type vipCluster struct {
	t     *testing.T
	net   *viptest.FakeNetwork
	nodes []*vipNode
}

// vipClusterOpts adjusts each node's configuration before it starts.
type vipClusterOpts struct {
	// Cluster, if set, changes node i's cluster config (timings, ...).
	Cluster func(i int, cfg *cluster.Config)
	// Manager, if set, changes node i's VIP manager config.
	Manager func(i int, cfg *vip.Config)
}

// newVIPCluster starts n real cluster nodes n1..nN on distinct 127.a.b.x addresses (real raft over TCP,
// real memberlist over UDP/TCP, bootstrap-expect n, the package's default timings), each running a VIP
// Manager whose kernel is the node's FakeKernel on one FakeNetwork, which fails the test the instant two
// nodes hold or answer for the VIP. Cleanup stops every Manager (releasing the VIP) and then every node.
func newVIPCluster(t *testing.T, n int, opts vipClusterOpts) *vipCluster {
	t.Helper()
	base := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), rand.IntN(256))
	dir := t.TempDir()
	vc := &vipCluster{t: t, net: viptest.NewFakeNetwork(t)}
	t.Cleanup(vc.stopAll)
	clog, mlog := clusterLogger(t, slog.LevelInfo), clusterLogger(t, slog.LevelDebug)
	for i := range n {
		name, ip := fmt.Sprintf("n%d", i+1), fmt.Sprintf("%s%d", base, i+1)
		var join []string
		for j := range n {
			if j != i {
				join = append(join, fmt.Sprintf("%s%d", base, j+1))
			}
		}
		ccfg := cluster.Config{
			NodeName:         name,
			BindAddr:         ip,
			DataDir:          filepath.Join(dir, name),
			BootstrapExpect:  n,
			Join:             join,
			Logger:           clog.With("test_node", name),
			Version:          "test",
			Partition:        cluster.NewPartition(),
			HeartbeatTimeout: clusterHeartbeat,
			ElectionTimeout:  clusterElection,
			LeaseTimeout:     clusterLease,
			EncryptKey:       []byte("vip-test-cluster-key-32-bytes-ok"), // the secure default: a cluster key
		}
		if opts.Cluster != nil {
			opts.Cluster(i, &ccfg)
		}
		c, err := cluster.New(ccfg)
		if err != nil {
			t.Fatalf("cluster.New %s: %v", name, err)
		}
		nd := &vipNode{name: name, ip: ip, c: c, part: ccfg.Partition, health: viptest.NewFakeHealth(),
			kernel: vc.net.Kernel(name), events: &viptest.EventLog{}, done: make(chan struct{})}
		nd.kernel.SetEventLog(nd.events)
		mcfg := vip.Config{
			VIPs:           []netip.Prefix{clusterVIP},
			Announce:       true,
			GARPRefresh:    clusterGARPRefresh,
			RaftHeartbeat:  clusterHeartbeat,
			BarrierTimeout: time.Second,
			Logger:         mlog.With("test_node", name),
		}
		if opts.Manager != nil {
			opts.Manager(i, &mcfg)
		}
		m, err := vip.NewManager(mcfg, clusterLeadership{c, name}, nd.health, nd.kernel)
		if err != nil {
			t.Fatalf("vip.NewManager %s: %v", name, err)
		}
		nd.m = m
		vc.nodes = append(vc.nodes, nd)
	}
	for _, nd := range vc.nodes {
		if err := nd.c.Start(context.Background()); err != nil {
			t.Fatalf("start %s: %v", nd.name, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		nd.cancel = cancel
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			nd.runErr = nd.m.Run(ctx)
		}()
		go func() {
			defer wg.Done()
			healthCh, stopHealth := nd.health.Subscribe()
			defer stopHealth()
			heldCh, stopHeld := nd.m.Subscribe()
			defer stopHeld()
			local := func() cluster.Meta {
				return cluster.Meta{Healthy: nd.health.Status().Healthy, ListenerUp: true, VIPHeld: nd.m.Held()}
			}
			publishMeta(ctx, nd.c, local, healthCh, heldCh) // the agent's own publisher
		}()
		go func() {
			wg.Wait()
			close(nd.done)
		}()
	}
	return vc
}

// stopManager stops node i's Manager (releasing the VIP) and its publisher, and checks Run's result.
func (vc *vipCluster) stopManager(i int) {
	vc.t.Helper()
	nd := vc.nodes[i]
	if nd.stopped {
		return
	}
	nd.stopped = true
	nd.cancel()
	select {
	case <-nd.done:
	case <-time.After(10 * time.Second):
		vc.t.Fatalf("%s: Manager.Run did not return within 10s of cancel", nd.name)
	}
	if nd.runErr != nil {
		vc.t.Errorf("%s: Manager.Run: %v", nd.name, nd.runErr)
	}
	if nd.m.Held() || nd.kernel.Has(clusterIP) || nd.kernel.Answering() {
		vc.t.Errorf("%s: still holds or answers for the VIP after its Manager stopped", nd.name)
	}
}

// kill crashes node i's cluster membership (raft and gossip stop, no leave, no transfer) while its Manager
// keeps running: the Manager must release on the leadership-lost signal alone. The Manager is stopped
// afterwards by the caller (stopManager) or by cleanup.
func (vc *vipCluster) kill(i int) {
	vc.t.Helper()
	nd := vc.nodes[i]
	nd.down = true
	if err := nd.c.Shutdown(); err != nil {
		vc.t.Errorf("shutdown %s: %v", nd.name, err)
	}
}

// stopAll stops every Manager first (nobody may answer for the VIP while leadership moves), then every
// cluster node, and checks that nobody holds the VIP afterwards.
func (vc *vipCluster) stopAll() {
	for i := range vc.nodes {
		vc.stopManager(i)
	}
	for _, nd := range vc.nodes {
		if !nd.down {
			nd.down = true
			nd.c.Shutdown()
		}
	}
	if h := vc.net.Holders(clusterIP); len(h) != 0 {
		vc.t.Errorf("VIP holders after shutdown: %v", h)
	}
}

// partition cuts the nodes in group off from all the others, in both directions (each side blocks the
// other's IPs), for raft and gossip alike.
func (vc *vipCluster) partition(group ...int) {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i, nd := range vc.nodes {
		var blocked []string
		for j, other := range vc.nodes {
			if in[i] != in[j] {
				blocked = append(blocked, other.ip)
			}
		}
		nd.part.Block(blocked...)
	}
}

// heal removes every cut.
func (vc *vipCluster) heal() {
	for _, nd := range vc.nodes {
		nd.part.Heal()
	}
}

// holders returns the names of the nodes that have the VIP configured now.
func (vc *vipCluster) holders() []string { return vc.net.Holders(clusterIP) }

// totalAcquisitions sums every node's acquisitions.
func (vc *vipCluster) totalAcquisitions() int {
	n := 0
	for _, nd := range vc.nodes {
		n += nd.acquisitions()
	}
	return n
}

// index returns the index of the node called name, or -1.
func (vc *vipCluster) index(name string) int {
	for i, nd := range vc.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// leaders returns the indexes of live nodes that raft considers leader.
func (vc *vipCluster) leaders() []int {
	var out []int
	for i, nd := range vc.nodes {
		if !nd.down && nd.c.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// soleHolder reports the index of the node that holds the VIP, if exactly one node does, and that
// node is raft leader and its Manager reports the VIP held, answers for it and clients point at it.
func (vc *vipCluster) soleHolder() (int, bool) {
	h := vc.holders()
	if len(h) != 1 {
		return -1, false
	}
	i := vc.index(h[0])
	nd := vc.nodes[i]
	if nd.down || !nd.c.IsLeader() || !nd.m.Held() || !nd.kernel.Answering() || vc.net.Owner(clusterIP) != nd.name {
		return -1, false
	}
	if l := vc.leaders(); len(l) != 1 || l[0] != i {
		return -1, false
	}
	return i, true
}

// waitHolder waits until exactly one node, the raft leader, holds the VIP and returns its index.
func (vc *vipCluster) waitHolder(timeout time.Duration, what string) int {
	vc.t.Helper()
	return vc.waitHolderNot(timeout, what, -1)
}

// waitHolderNot is waitHolder for a holder other than node not.
func (vc *vipCluster) waitHolderNot(timeout time.Duration, what string, not int) int {
	vc.t.Helper()
	holder := -1
	testutil.WaitFor(vc.t, timeout, what, func() bool {
		i, ok := vc.soleHolder()
		holder = i
		return ok && i != not
	})
	return holder
}

// stableFor checks cond every 5 ms for d and fails the test the first time it does not hold. It
// asserts that something stays true over a window (no flap back), so it must observe the whole window.
func (vc *vipCluster) stableFor(d time.Duration, what string, cond func() bool) {
	vc.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			vc.t.Fatalf("%s stopped holding after %v of %v", what, d-time.Until(deadline), d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitVoters waits until every live node sees n voters and n alive members with their metadata, so
// that health-based transfers have their candidates.
func (vc *vipCluster) waitVoters(n int) {
	vc.t.Helper()
	for _, nd := range vc.nodes {
		if nd.down {
			continue
		}
		testutil.WaitFor(vc.t, 10*time.Second, nd.name+" sees every member alive", func() bool {
			ms := nd.c.Members()
			alive := 0
			for _, m := range ms {
				if m.Status == cluster.StatusAlive && m.Meta.RaftAddr != "" && m.Role != cluster.RoleNone {
					alive++
				}
			}
			return alive == n && nd.c.Status().Voters == n
		})
	}
}

// waitSeesHealth waits until observer's view of peer's gossiped health equals healthy.
func (vc *vipCluster) waitSeesHealth(observer, peer int, healthy bool) {
	vc.t.Helper()
	obs, p := vc.nodes[observer], vc.nodes[peer]
	testutil.WaitFor(vc.t, 5*time.Second, fmt.Sprintf("%s sees %s healthy=%v", obs.name, p.name, healthy), func() bool {
		for _, m := range obs.c.Members() {
			if m.Name == p.name {
				return m.Status == cluster.StatusAlive && m.Meta.Healthy == healthy
			}
		}
		return false
	})
}

// assertInvariant is every test's final check: at no instant did two nodes hold the VIP (the
// FakeNetwork has already failed the test at the offending AddAddr if they did).
func (vc *vipCluster) assertInvariant() {
	vc.t.Helper()
	if got := vc.net.MaxHolders(clusterIP); got > 1 {
		vc.t.Fatalf("max simultaneous VIP holders %d, want at most 1", got)
	}
}
