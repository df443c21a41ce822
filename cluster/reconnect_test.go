package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// TestReconnectAfterPartition partitions one node long enough for gossip to declare it dead on both sides and
// for the "dead" broadcasts to drain (as in the docker suite's 5 s partition), heals, and expects every node
// to list all three alive again within a few reconnect rounds; memberlist alone never would, since it neither
// probes nor push-pulls with dead nodes. Then the once-partitioned node leaves gracefully and must stay
// "left": the reconnect loop never tries it.
func TestReconnectAfterPartition(t *testing.T) {
	tc := makeCluster(t, 3, true)
	tc.stable()
	allAlive := func() bool {
		for i, nd := range tc.nodes {
			if nd.c == nil {
				continue
			}
			for j := range tc.nodes {
				if tc.statusOf(i, tc.nodes[j].cfg.NodeName) != StatusAlive {
					return false
				}
			}
		}
		return true
	}
	testutil.WaitFor(t, 5*time.Second, "all alive before the partition", allAlive)

	tc.partition(2)
	// 3 nodes: a probe round (each peer is probed every 2 × 500 ms) plus the suspicion timeout,
	// SuspicionMult(4) × ProbeInterval(500 ms) = 2 s, as no third node can confirm the suspicion.
	cut := time.Now()
	testutil.WaitFor(t, 10*time.Second, "n3 dead on both sides", func() bool {
		return tc.statusOf(0, "n3") == StatusDead && tc.statusOf(1, "n3") == StatusDead &&
			tc.statusOf(2, "n1") == StatusDead && tc.statusOf(2, "n2") == StatusDead
	})
	t.Logf("n3 dead on both sides %v after the cut", time.Since(cut))
	// While "dead" broadcasts are still being retransmitted memberlist heals by itself (it gossips to nodes
	// dead for less than GossipToTheDeadTime); they drain within 4 transmissions at the 50 ms gossip
	// interval. Stay cut until every node's reconnect loop has found its peer failed and tried it (a round
	// comes at least 0.8 s after the death): by then the broadcasts have long drained, and only the
	// reconnect loop can heal.
	for i, peer := range []string{"n3", "n3", "n1"} {
		testutil.WaitFor(t, 5*time.Second, "reconnect loop found the failed peer", func() bool {
			return tc.nodes[i].logs.ContainsLine("member failed; trying to re-join", "peer="+peer)
		})
	}
	healed := time.Now()
	tc.heal()
	testutil.WaitFor(t, 5*time.Second, "all three alive everywhere after heal", allAlive)
	t.Logf("gossip converged %v after heal", time.Since(healed))
	for i, peer := range []string{"n3", "n3", "n1"} {
		testutil.WaitFor(t, 3*reconnectInterval, "failure and recovery logged", func() bool {
			return tc.nodes[i].logs.ContainsLine("member failed; trying to re-join", "peer="+peer) &&
				tc.nodes[i].logs.ContainsLine("reachable again", "peer="+peer)
		})
	}

	// Raft heartbeats reach n3 at once, but log replication to it resumes only after raft's failure backoff
	// (up to ~10 s after a long partition); Leave needs n3 to learn that it was removed, so wait for that.
	leader := tc.waitLeader(5*time.Second, 0, 1)
	if err := tc.nodes[leader].c.Barrier(context.Background()); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	target := tc.nodes[leader].c.Status().CommitIndex
	testutil.WaitFor(t, 15*time.Second, "n3's raft log caught up", func() bool { return tc.nodes[2].c.Status().AppliedIndex >= target })
	t.Logf("n3's raft log caught up %v after heal", time.Since(healed))

	marks := make([]int, len(tc.nodes))
	for i, nd := range tc.nodes {
		marks[i] = nd.logs.Mark()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.nodes[2].c.Leave(ctx); err != nil {
		t.Fatalf("n3 Leave: %v", err)
	}
	for i := range 2 {
		testutil.WaitFor(t, 5*time.Second, "n3 left", func() bool { return tc.statusOf(i, "n3") == StatusLeft })
	}
	consistently(t, 3*reconnectInterval, "departed n3 stays left, never re-joined", func() error {
		for i := range 2 {
			if st := tc.statusOf(i, "n3"); st != StatusLeft {
				return fmt.Errorf("n%d lists departed n3 as %s", i+1, st)
			}
			if tc.nodes[i].logs.ContainsLineSince(marks[i], "trying to re-join", "peer=n3") {
				return fmt.Errorf("n%d tried to re-join n3, which left gracefully", i+1)
			}
		}
		return nil
	})
}

func TestReconnectTargets(t *testing.T) {
	rec := func(name string, st MemberStatus) memberRecord {
		return memberRecord{name: name, addr: name + ":7946", status: st}
	}
	join := []string{"j1:7946", "j2:7946"}
	for _, tt := range []struct {
		name   string
		recs   []memberRecord
		joined bool
		limit  int
		want   []string // target names, sorted; "" = the -join addresses
	}{
		{"nobody failed", []memberRecord{rec("self", StatusAlive), rec("a", StatusAlive), rec("b", StatusSuspect)}, true, 3, nil},
		{"dead only, not left", []memberRecord{rec("self", StatusAlive), rec("a", StatusDead), rec("b", StatusLeft), rec("c", StatusAlive)}, true, 3, []string{"a"}},
		{"self never", []memberRecord{rec("self", StatusDead), rec("a", StatusDead)}, true, 3, []string{"a"}},
		{"bounded", []memberRecord{rec("a", StatusDead), rec("b", StatusDead), rec("c", StatusDead), rec("d", StatusDead)}, true, 2, nil},
		{"no peers: -join", []memberRecord{rec("self", StatusAlive)}, true, 3, []string{""}},
		{"no peers, initial join still running", []memberRecord{rec("self", StatusAlive)}, false, 3, nil},
		{"only left peers: not a lonely node", []memberRecord{rec("self", StatusAlive), rec("a", StatusLeft)}, true, 3, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := reconnectTargets("self", tt.recs, join, tt.joined, tt.limit)
			if tt.name == "bounded" {
				if len(got) != tt.limit {
					t.Fatalf("got %d targets, want the limit %d", len(got), tt.limit)
				}
				return
			}
			var names []string
			for _, g := range got {
				names = append(names, g.name)
				if g.name == "" && !slices.Equal(g.addrs, join) {
					t.Errorf("join target addrs = %v", g.addrs)
				}
				if g.name != "" && (len(g.addrs) != 1 || g.addrs[0] != g.name+":7946") {
					t.Errorf("target %s addrs = %v", g.name, g.addrs)
				}
			}
			slices.Sort(names)
			if !slices.Equal(names, tt.want) {
				t.Errorf("targets = %q, want %q", names, tt.want)
			}
		})
	}
}
