package cluster

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

func TestLeave(t *testing.T) {
	for _, leaderLeaves := range []bool{true, false} {
		name := "follower"
		if leaderLeaves {
			name = "leader"
		}
		t.Run(name, func(t *testing.T) {
			tc := makeCluster(t, 3, true)
			leader := tc.stable()
			who := (leader + 1) % 3
			if leaderLeaves {
				who = leader
			}
			var rest []int
			for i := range tc.nodes {
				if i != who {
					rest = append(rest, i)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tc.nodes[who].c.Leave(ctx); err != nil {
				t.Fatalf("Leave: %v", err)
			}
			nl := tc.waitLeader(2*time.Second, rest...)
			gone := tc.nodes[who].cfg.NodeName
			testutil.WaitFor(t, 5*time.Second, "departed node removed from raft", func() bool {
				v := tc.voters(nl)
				return len(v) == 2 && !slices.Contains(v, gone)
			})
			testutil.WaitFor(t, 5*time.Second, "departed node shown as left", func() bool {
				for _, m := range tc.nodes[nl].c.Members() {
					if m.Name == gone {
						return m.Status == StatusLeft && m.Role == RoleNone
					}
				}
				return false
			})
			if err := tc.nodes[who].c.Leave(ctx); err == nil {
				t.Error("second Leave succeeded")
			}
		})
	}
}

// TestForceLeave kills two of five nodes, then checks that force-leave refuses to remove an alive voter when
// the remaining alive voters would lack a quorum, works for a failed one, and is leader-only.
func TestForceLeave(t *testing.T) {
	tc := makeCluster(t, 5, true)
	leader := tc.stable()
	var dead, alive []int
	for i := range tc.nodes {
		if i != leader && len(dead) < 2 {
			dead = append(dead, i)
		} else if i != leader {
			alive = append(alive, i)
		}
	}
	for _, i := range dead {
		tc.kill(i)
	}
	lc := tc.nodes[leader].c
	testutil.WaitFor(t, 10*time.Second, "killed nodes marked dead", func() bool {
		n := 0
		for _, m := range lc.Members() {
			if m.Status == StatusDead {
				n++
			}
		}
		return n == 2
	})
	if !lc.IsLeader() {
		t.Fatal("leader lost leadership with 3 of 5 alive")
	}
	err := lc.ForceLeave(tc.nodes[alive[0]].cfg.NodeName)
	if !errors.Is(err, ErrQuorum) {
		t.Fatalf("force-leave of an alive voter with 2 of 5 dead: err = %v, want ErrQuorum", err)
	}
	t.Logf("refusal: %v", err)
	if err := tc.nodes[alive[0]].c.ForceLeave(tc.nodes[dead[0]].cfg.NodeName); !errors.Is(err, ErrNotLeader) {
		t.Errorf("force-leave on a follower: err = %v, want ErrNotLeader", err)
	}
	if err := lc.ForceLeave("nope"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("force-leave of an unknown node: err = %v, want ErrUnknownNode", err)
	}
	if err := lc.ForceLeave(lc.cfg.NodeName); err == nil {
		t.Error("force-leave of self succeeded")
	}
	for _, i := range dead {
		if err := lc.ForceLeave(tc.nodes[i].cfg.NodeName); err != nil {
			t.Fatalf("force-leave of failed n%d: %v", i+1, err)
		}
	}
	if v := tc.voters(leader); len(v) != 3 {
		t.Errorf("voters after force-leave = %v, want 3", v)
	}
	if n := len(lc.Members()); n != 3 {
		t.Errorf("members after force-leave = %d, want 3", n)
	}
	if !lc.IsLeader() {
		t.Error("leader lost leadership")
	}
	if err := lc.Barrier(context.Background()); err != nil {
		t.Errorf("barrier with the new 3-voter configuration: %v", err)
	}
}

// TestRecover loses two of three nodes for good, recovers the survivor to a one-node configuration and
// restarts it: it leads alone, with its old log.
func TestRecover(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.waitLeader(10 * time.Second)
	testutil.WaitFor(t, 5*time.Second, "3 voters", func() bool { return len(tc.voters(leader)) == 3 })
	for i := range tc.nodes {
		tc.kill(i)
	}
	n1 := tc.nodes[0]
	if err := Recover(n1.cfg.DataDir, nil); !errors.Is(err, ErrInvalidPeers) {
		t.Errorf("Recover with no peers: err = %v", err)
	}
	if err := Recover(t.TempDir(), []Peer{{Name: "n1", Addr: "127.0.0.1:7947"}}); err == nil {
		t.Error("Recover of an empty dir succeeded")
	}
	raftAddr := n1.c.raftAddr
	if err := Recover(n1.cfg.DataDir, []Peer{{Name: "n1", Addr: raftAddr}}); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	n1.cfg.Join = nil
	tc.start(0)
	testutil.WaitFor(t, 5*time.Second, "recovered node leads alone", func() bool { return n1.c.IsLeader() })
	if st := n1.c.Status(); st.Voters != 1 {
		t.Errorf("voters = %d, want 1", st.Voters)
	}
}

func TestValidatePeers(t *testing.T) {
	for _, tt := range []struct {
		name  string
		peers []Peer
		ok    bool
	}{
		{"empty", nil, false},
		{"ok", []Peer{{"a", "10.0.0.1:7947"}, {"b", "10.0.0.2:7947"}}, true},
		{"no name", []Peer{{"", "10.0.0.1:7947"}}, false},
		{"no port", []Peer{{"a", "10.0.0.1"}}, false},
		{"bad port", []Peer{{"a", "10.0.0.1:99999"}}, false},
		{"dup name", []Peer{{"a", "10.0.0.1:7947"}, {"a", "10.0.0.2:7947"}}, false},
		{"dup addr", []Peer{{"a", "10.0.0.1:7947"}, {"b", "10.0.0.1:7947"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := validatePeers(tt.peers)
			if (err == nil) != tt.ok {
				t.Fatalf("validatePeers = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidPeers) {
				t.Errorf("err %v does not wrap ErrInvalidPeers", err)
			}
		})
	}
}
