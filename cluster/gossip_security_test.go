package cluster

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/rogue"
	"github.com/vipd/vipd/internal/testutil"
)

// startRogueGossip starts a foreign memberlist node on ip claiming a healthy, high-priority member with Raft
// state and a Raft address, and has it try to join every node of tc.
func startRogueGossip(t *testing.T, tc *tcluster, ip, name string, key []byte) *rogue.GossipNode {
	t.Helper()
	g, err := rogue.StartGossip(rogue.GossipConfig{Name: name, BindAddr: ip, Port: DefaultGossipPort, Key: key,
		Meta: rogue.ClaimMeta(ip + ":7947")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	var addrs []string
	for _, nd := range tc.nodes {
		addrs = append(addrs, fmt.Sprintf("%s:%d", nd.ip, DefaultGossipPort))
	}
	n, err := g.Join(addrs...)
	t.Logf("rogue %q joined %d: %v", name, n, err)
	return g
}

func (tc *tcluster) lists(i int, name string) bool {
	for _, m := range tc.nodes[i].c.Members() {
		if m.Name == name {
			return true
		}
	}
	return false
}

// TestRogueGossipRefused: a foreign memberlist node without the key, or with a wrong one, claiming health,
// the highest priority and Raft state, is never listed as a member nor made a voter, and the cluster does
// not notice it.
func TestRogueGossipRefused(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt)
	tc.stable()
	before := tc.snapshot()
	changed := tc.watchAll()
	ip := func(last int) string { return fmt.Sprintf("%s%d", tc.nodes[0].ip[:len(tc.nodes[0].ip)-1], last) }
	plain := startRogueGossip(t, tc, ip(201), "rogue-plain", nil)
	wrong := startRogueGossip(t, tc, ip(202), "rogue-wrong", []byte("a-wrong-key-of-exactly-32-bytes!"))
	// Let gossip run for several probe and push-pull rounds.
	consistently(t, 3*time.Second, "no node lists a rogue", func() error {
		for i := range tc.nodes {
			for _, name := range []string{"rogue-plain", "rogue-wrong"} {
				if tc.lists(i, name) {
					return fmt.Errorf("n%d lists %s", i+1, name)
				}
			}
		}
		return nil
	})
	for _, g := range []*rogue.GossipNode{plain, wrong} {
		if m := g.Members(); len(m) != 1 {
			t.Errorf("rogue sees members %v", m)
		}
	}
	if after := tc.snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("cluster changed: %+v -> %+v", before, after)
	}
	changed()
}

// TestRogueGossipInsecure is the control: against an Insecure cluster the same foreign node is listed as a
// member, with its claimed health and priority, and becomes a Raft voter.
func TestRogueGossipInsecure(t *testing.T) {
	tc := makeCluster(t, 3, true, insecureOpt, calmOpt)
	leader := tc.stable()
	ip := fmt.Sprintf("%s%d", tc.nodes[0].ip[:len(tc.nodes[0].ip)-1], 201)
	startRogueGossip(t, tc, ip, "rogue", nil)
	testutil.WaitFor(t, 5*time.Second, "the insecure cluster lists the rogue, healthy", func() bool {
		for _, m := range tc.nodes[leader].c.Members() {
			if m.Name == "rogue" && m.Meta.Healthy && m.Meta.Priority == 1000 {
				return true
			}
		}
		return false
	})
	testutil.WaitFor(t, 5*time.Second, "the rogue became a voter", func() bool {
		return slices.Contains(tc.voters(leader), "rogue")
	})
}

// TestRogueGossipHasStateCannotBlockBootstrap: a stranger gossiping "I have Raft state" to nodes waiting to
// bootstrap makes them wait forever in an insecure cluster (the control); with a key they never hear it and
// form.
func TestRogueGossipHasStateCannotBlockBootstrap(t *testing.T) {
	t.Run("key", func(t *testing.T) { testHasStateRogue(t, false) })
	t.Run("insecure", func(t *testing.T) { testHasStateRogue(t, true) })
}

func testHasStateRogue(t *testing.T, insecure bool) {
	var opts []clusterOpt
	if insecure {
		opts = append(opts, insecureOpt)
	}
	tc := makeCluster(t, 3, false, opts...)
	ip := fmt.Sprintf("%s%d", tc.nodes[0].ip[:len(tc.nodes[0].ip)-1], 201)
	// The rogue is up first and keeps trying to join, so it races every node's own joins.
	g, err := rogue.StartGossip(rogue.GossipConfig{Name: "rogue", BindAddr: ip, Port: DefaultGossipPort, Meta: rogue.ClaimMeta(ip + ":7947")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	for i := range tc.nodes {
		tc.start(i)
		g.Join(fmt.Sprintf("%s:%d", tc.nodes[i].ip, DefaultGossipPort))
	}
	if insecure {
		testutil.WaitFor(t, 5*time.Second, "bootstrap blocked by the rogue's claim", func() bool {
			return tc.nodes[0].logs.Contains("a peer already has raft state")
		})
		if len(tc.leaders()) != 0 {
			t.Errorf("insecure nodes bootstrapped despite the rogue: leaders %v", tc.leaders())
		}
		return
	}
	tc.stable()
	for i := range tc.nodes {
		if tc.lists(i, "rogue") {
			t.Errorf("n%d lists the rogue", i+1)
		}
	}
}

// TestGossipRefusesInvalidNames: a member whose name is not a valid node name (terminal escapes here) is
// refused by the alive and merge delegates, whatever the security mode, so `vipd members` never prints it.
func TestGossipRefusesInvalidNames(t *testing.T) {
	tc := makeCluster(t, 1, true, insecureOpt)
	tc.stable()
	ip := fmt.Sprintf("%s%d", tc.nodes[0].ip[:len(tc.nodes[0].ip)-1], 201)
	mark := tc.nodes[0].logs.Mark()
	evil := "evil\x1b]0;pwned\x07"
	g, err := rogue.StartGossip(rogue.GossipConfig{Name: evil, BindAddr: ip, Port: DefaultGossipPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown() })
	n, err := g.Join(fmt.Sprintf("%s:%d", tc.nodes[0].ip, DefaultGossipPort))
	t.Logf("join: %d, %v", n, err)
	testutil.WaitFor(t, 5*time.Second, "refusal logged, escaped", func() bool {
		return tc.nodes[0].logs.ContainsLineSince(mark, "invalid node name", `evil\x1b]0;pwned\a`)
	})
	// Let gossip run: alive messages about it, direct or relayed, are refused too.
	consistently(t, 2*time.Second, "only valid names listed", func() error {
		for _, m := range tc.nodes[0].c.Members() {
			if !ValidNodeName(m.Name) {
				return fmt.Errorf("member list has %q", m.Name)
			}
		}
		return nil
	})
	if !tc.nodes[0].c.IsLeader() || len(tc.voters(0)) != 1 {
		t.Errorf("the node was disturbed: leader %v, voters %v", tc.nodes[0].c.IsLeader(), tc.voters(0))
	}
}
