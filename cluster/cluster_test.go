package cluster

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// TestFormAnyOrder starts nodes last-first, so every node's first joins hit peers that are not listening yet.
func TestFormAnyOrder(t *testing.T) {
	tc := makeCluster(t, 3, false)
	last := len(tc.nodes) - 1
	tc.start(last)
	// Only once its first join has failed do the others start: started back to back, they could be listening
	// before its first dial, and the retry would go untested.
	testutil.WaitFor(t, 10*time.Second, "n3's first join to fail", func() bool { return tc.nodes[last].logs.Contains("join failed; retrying") })
	for i := last - 1; i >= 0; i-- {
		tc.start(i)
	}
	tc.waitLeader(10 * time.Second)
	for i := range tc.nodes {
		testutil.WaitFor(t, 5*time.Second, "3 voters everywhere", func() bool { return len(tc.voters(i)) == 3 })
		testutil.WaitFor(t, 5*time.Second, "3 alive members with metadata", func() bool {
			ms := tc.nodes[i].c.Members()
			if len(ms) != 3 {
				return false
			}
			leaders := 0
			for _, m := range ms {
				if m.Status != StatusAlive || m.Meta.RaftAddr == "" || m.Role == RoleNone {
					return false
				}
				if m.Leader {
					leaders++
				}
			}
			return leaders == 1
		})
	}
}

func TestKillLeader(t *testing.T) {
	tc := makeCluster(t, 3, true)
	old := tc.stable()
	var rest []int
	for i := range tc.nodes {
		if i != old {
			rest = append(rest, i)
		}
	}
	tc.kill(old)
	nl := tc.waitLeader(3*time.Second, rest...)
	if nl == old {
		t.Fatalf("leader did not change")
	}
	st := tc.nodes[rest[0]].c.Status()
	if st.Voters != 3 {
		t.Errorf("voters = %d after a crash, want 3 (a failed node stays a voter)", st.Voters)
	}
}

// TestPartitionLeader cuts the leader off from its peers and samples every node every 2 ms: at no instant may
// two nodes be raft leader, or two nodes believe (through WatchLeadership, as the VIP manager does) that they
// lead.
func TestPartitionLeader(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(string(rune('0'+n))+"nodes", func(t *testing.T) {
			tc := makeCluster(t, n, true)
			old := tc.stable()
			watches := make([]<-chan LeaderState, n)
			believes := make([]bool, n)
			for i, nd := range tc.nodes {
				ch, cancel := nd.c.WatchLeadership()
				t.Cleanup(cancel)
				watches[i] = ch
			}
			violations := 0
			sample := func() {
				raftLeaders, believers := 0, 0
				for i, nd := range tc.nodes {
					select {
					case v := <-watches[i]:
						believes[i] = v.Leader
					default:
					}
					if believes[i] {
						believers++
					}
					if nd.c.IsLeader() {
						raftLeaders++
					}
				}
				if raftLeaders > 1 || believers > 1 {
					violations++
					t.Errorf("split brain: %d raft leaders, %d believe they lead", raftLeaders, believers)
				}
			}
			var rest []int
			for i := range tc.nodes {
				if i != old {
					rest = append(rest, i)
				}
			}
			cut := time.Now()
			tc.partition(old)
			var stepDown time.Duration
			newLeader := -1
			testutil.WaitFor(t, 5*time.Second, "old leader steps down and a new one is elected", func() bool {
				sample()
				if stepDown == 0 && !tc.nodes[old].c.IsLeader() {
					stepDown = time.Since(cut)
				}
				for _, i := range rest {
					if tc.nodes[i].c.IsLeader() {
						newLeader = i
					}
				}
				return stepDown > 0 && newLeader >= 0
			})
			if stepDown == 0 || newLeader < 0 {
				t.Fatalf("after 5s: old leader stepped down=%v, new leader=%d", stepDown > 0, newLeader)
			}
			elected := time.Since(cut)
			t.Logf("old leader stepped down after %v; new leader n%d after %v", stepDown, newLeader+1, elected)
			// The lease check fires within the lease of the last quorum contact (+10 ms granularity); allow
			// scheduling slack on a loaded CI machine.
			if limit := DefaultLease + DefaultHeartbeat; stepDown > limit {
				t.Errorf("old leader stepped down after %v, want within %v", stepDown, limit)
			}
			// Keep sampling while partitioned: the isolated node must not become leader again.
			consistently(t, 500*time.Millisecond, "isolated old leader stays follower", func() error {
				sample()
				if tc.nodes[old].c.IsLeader() {
					return errors.New("isolated old leader leads again")
				}
				return nil
			})
			tc.heal()
			consistently(t, time.Second, "no split brain after heal", func() error { sample(); return nil })
			tc.waitLeader(5 * time.Second)
			testutil.WaitFor(t, 5*time.Second, "old leader rejoins as follower", func() bool {
				st := tc.nodes[old].c.Status()
				return st.Role == RoleFollower && st.LeaderName != ""
			})
			if violations > 0 {
				t.Fatalf("%d split-brain samples", violations)
			}
		})
	}
}

// TestRestartWithDataDir restarts a follower with its data dir: it keeps its identity, rejoins as follower and
// never bootstraps again.
func TestRestartWithDataDir(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.stable()
	f := (leader + 1) % 3
	termBefore := tc.nodes[leader].c.Status().Term
	tc.kill(f)
	tc.nodes[f].logs = testutil.NewLogSink(t)
	tc.nodes[f].cfg.Logger = tc.nodes[f].logs.Logger(slog.LevelInfo)
	tc.start(f)
	testutil.WaitFor(t, 5*time.Second, "restarted node follows", func() bool {
		st := tc.nodes[f].c.Status()
		return st.Role == RoleFollower && st.LeaderName != "" && st.Voters == 3
	})
	if tc.nodes[f].logs.Contains("raft bootstrapped") {
		t.Error("restarted node bootstrapped again")
	}
	if got := tc.leaders(); len(got) != 1 || got[0] != leader {
		t.Errorf("leaders = %v, want only n%d (a restarted follower must not disturb the leader)", got, leader+1)
	}
	if st := tc.nodes[leader].c.Status(); st.Term != termBefore {
		t.Errorf("term moved from %d to %d on a follower restart", termBefore, st.Term)
	}
}

func TestTransferLeadership(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.stable()
	to := (leader + 1) % 3
	ctx := context.Background()
	if err := tc.nodes[leader].c.TransferLeadership(ctx, "nope"); err == nil {
		t.Fatal("transfer to an unknown node succeeded")
	}
	if err := tc.nodes[leader].c.TransferLeadership(ctx, tc.nodes[to].cfg.NodeName); err != nil {
		t.Fatalf("transfer: %v", err)
	}
	if got := tc.waitLeader(2 * time.Second); got != to {
		t.Fatalf("leader is n%d, want n%d", got+1, to+1)
	}
	if err := tc.nodes[to].c.Barrier(ctx); err != nil {
		t.Errorf("barrier on new leader: %v", err)
	}
	if _, err := tc.nodes[to].c.VerifyLeader(ctx); err != nil {
		t.Errorf("verify on new leader: %v", err)
	}
	if _, err := tc.nodes[leader].c.VerifyLeader(ctx); err == nil {
		t.Error("verify on old leader succeeded")
	}
	if err := tc.nodes[to].c.TransferLeadership(ctx, ""); err != nil {
		t.Errorf("transfer to any: %v", err)
	}
	if got := tc.waitLeader(2 * time.Second); got == to {
		t.Errorf("leadership did not move")
	}
}
