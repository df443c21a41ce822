package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/fielderr"
	"github.com/vipd/vipd/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testKey is the cluster key of test clusters: every test cluster runs the secure default unless a test asks
// for another mode.
var testKey = []byte("cluster-test-key-of-32-bytes-ok!")

// consistently samples cond every 2 ms for d and fails the test the first time it does not hold: an
// observation window ("nothing moves for a few gossip rounds"), the counterpart of testutil.WaitFor.
func consistently(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	end := time.After(d)
	for {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		select {
		case <-end:
			return
		case <-tick.C:
		}
	}
}

// randomNet returns a random 127.a.b. prefix so concurrent test packages (and other engineers' tests on the
// default ports) never collide.
func randomNet() string {
	return fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), rand.IntN(256))
}

type tnode struct {
	cfg  Config
	c    *Cluster
	part *Partition
	logs *testutil.LogSink
	ip   string
}

type tcluster struct {
	t     testing.TB
	nodes []*tnode
}

type clusterOpt func(i int, cfg *Config)

// makeCluster creates n nodes n1..nN on distinct loopback IPs, each joining all the others and bootstrapping
// together (-bootstrap-expect n), and starts them in index order unless noStart is given. Cleanup shuts every
// node down.
func makeCluster(t testing.TB, n int, start bool, opts ...clusterOpt) *tcluster {
	t.Helper()
	base := randomNet()
	dir := t.TempDir()
	tc := &tcluster{t: t}
	for i := range n {
		ip := fmt.Sprintf("%s%d", base, i+1)
		var join []string
		for j := range n {
			if j != i {
				join = append(join, fmt.Sprintf("%s%d", base, j+1))
			}
		}
		part := NewPartition()
		sink := testutil.NewLogSink(t)
		cfg := Config{
			NodeName:        fmt.Sprintf("n%d", i+1),
			BindAddr:        ip,
			DataDir:         filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			BootstrapExpect: n,
			Join:            join,
			Logger:          sink.Logger(slog.LevelInfo).With("test_node", fmt.Sprintf("n%d", i+1)),
			Version:         "test",
			Partition:       part,
			EncryptKey:      testKey,
		}
		if os.Getenv("VIPD_TEST_INSECURE") != "" {
			insecureOpt(i, &cfg)
		}
		for _, o := range opts {
			o(i, &cfg)
		}
		tc.nodes = append(tc.nodes, &tnode{cfg: cfg, part: part, logs: sink, ip: ip})
	}
	t.Cleanup(func() {
		for _, nd := range tc.nodes {
			if nd.c != nil {
				nd.c.Shutdown()
			}
		}
	})
	if start {
		for i := range tc.nodes {
			tc.start(i)
		}
	}
	return tc
}

// start (re)creates node i's Cluster from its config and starts it.
func (tc *tcluster) start(i int) {
	tc.t.Helper()
	nd := tc.nodes[i]
	c, err := New(nd.cfg)
	if err != nil {
		tc.t.Fatalf("New %s: %v", nd.cfg.NodeName, err)
	}
	if err := c.Start(context.Background()); err != nil {
		tc.t.Fatalf("Start %s: %v", nd.cfg.NodeName, err)
	}
	nd.c = c
}

// kill stops node i abruptly (no leave), as a crash would.
func (tc *tcluster) kill(i int) {
	tc.t.Helper()
	if err := tc.nodes[i].c.Shutdown(); err != nil {
		tc.t.Errorf("shutdown %s: %v", tc.nodes[i].cfg.NodeName, err)
	}
}

// leaders returns the indexes of running nodes whose raft state is Leader.
func (tc *tcluster) leaders() []int {
	var out []int
	for i, nd := range tc.nodes {
		if nd.c != nil && nd.c.IsLeader() {
			out = append(out, i)
		}
	}
	return out
}

// waitLeader waits until exactly one node of among leads, and returns it.
func (tc *tcluster) waitLeader(timeout time.Duration, among ...int) int {
	tc.t.Helper()
	if len(among) == 0 {
		for i := range tc.nodes {
			among = append(among, i)
		}
	}
	leader := -1
	testutil.WaitFor(tc.t, timeout, "exactly one leader", func() bool {
		n := 0
		for _, i := range among {
			if tc.nodes[i].c.IsLeader() {
				leader = i
				n++
			}
		}
		if len(tc.leaders()) > 1 {
			tc.t.Fatalf("two leaders at once: %v", tc.leaders())
		}
		return n == 1
	})
	return leader
}

// stable waits for a cluster in steady state, as faults find production clusters: one leader, every node
// following it with all voters, and every node holding its warm spare connection to every other voter.
// Tests that inject a fault (kill, restart, transfer, partition) start from here.
func (tc *tcluster) stable(among ...int) int {
	tc.t.Helper()
	if len(among) == 0 {
		for i := range tc.nodes {
			among = append(among, i)
		}
	}
	leader := -1
	testutil.WaitFor(tc.t, 15*time.Second, "one leader, every node following it with all voters", func() bool {
		ls := tc.leaders()
		if len(ls) > 1 {
			tc.t.Fatalf("two leaders at once: %v", ls)
		}
		if len(ls) == 0 {
			return false
		}
		leader = ls[0]
		for _, i := range among {
			st := tc.nodes[i].c.Status()
			if st.Voters != len(among) || st.LeaderName != tc.nodes[leader].cfg.NodeName {
				return false
			}
		}
		return true
	})
	for _, i := range among {
		sp := tc.nodes[i].c.trans.dial.spares
		testutil.WaitFor(tc.t, 10*time.Second, "warm spares to every other voter", func() bool {
			for _, j := range among {
				if j != i && sp.count(tc.nodes[j].c.raftAddr) < sparesPerPeer {
					return false
				}
			}
			return true
		})
	}
	if !tc.nodes[leader].c.IsLeader() {
		return tc.stable(among...) // leadership moved while the spares warmed: settle again
	}
	return leader
}

// voters returns the voter IDs in node i's raft configuration.
func (tc *tcluster) voters(i int) []string {
	cfg, err := tc.nodes[i].c.configuration()
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range cfg.Servers {
		if s.Suffrage == 0 { // raft.Voter
			out = append(out, string(s.ID))
		}
	}
	return out
}

// partition cuts the nodes in group from all others (both directions); heal removes every cut.
func (tc *tcluster) partition(group ...int) {
	in := map[int]bool{}
	for _, i := range group {
		in[i] = true
	}
	for i, nd := range tc.nodes {
		var blocked []string
		for j, other := range tc.nodes {
			if in[i] != in[j] {
				blocked = append(blocked, other.ip)
			}
		}
		nd.part.Block(blocked...)
	}
}

// statusOf returns node i's gossip status of the named member ("" if unknown).
func (tc *tcluster) statusOf(i int, name string) MemberStatus {
	for _, m := range tc.nodes[i].c.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func (tc *tcluster) heal() {
	for _, nd := range tc.nodes {
		nd.part.Heal()
	}
}

// fielderrAs returns the field an error of New names.
func fielderrAs(err error) (string, bool) {
	fe, ok := fielderr.As(err)
	if !ok {
		return "", false
	}
	return fe.Field, true
}
