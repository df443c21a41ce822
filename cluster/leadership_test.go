package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vipd/vipd/internal/testutil"
)

// TestWatchLeadershipTerms: every notification carries raft's term, so a watcher tells a new leadership from
// a repeated value even when the false in between was coalesced; shutdown reports {false, 0}.
func TestWatchLeadershipTerms(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.stable()
	to := (leader + 1) % 3
	ch, cancel := tc.nodes[to].c.WatchLeadership()
	defer cancel()
	first := <-ch
	if first.Leader {
		t.Fatalf("follower watch starts with %+v", first)
	}
	term := tc.nodes[leader].c.Status().Term
	if err := tc.nodes[leader].c.TransferLeadership(context.Background(), tc.nodes[to].cfg.NodeName); err != nil {
		t.Fatal(err)
	}
	var got LeaderState
	testutil.WaitFor(t, 5*time.Second, "the target is told it leads", func() bool {
		select {
		case got = <-ch:
		default:
		}
		return got.Leader
	})
	if got.Term <= term || got.Term != tc.nodes[to].c.Status().Term {
		t.Errorf("leadership notified with term %d; the transfer was from term %d, raft is at %d", got.Term, term, tc.nodes[to].c.Status().Term)
	}
	tc.kill(to)
	if v := <-ch; v != (LeaderState{}) {
		t.Errorf("after shutdown: %+v, want {false 0}", v)
	}
}

// TestVerifyLeaderHonoursContext: on a leader cut off from its peers VerifyLeader waits for raft's lease;
// with a context that ends first it returns the context's error at once, and Shutdown still leaves no
// goroutine behind (goleak in TestMain).
func TestVerifyLeaderHonoursContext(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt)
	leader := tc.stable()
	c := tc.nodes[leader].c
	before := time.Now()
	since, err := c.VerifyLeader(context.Background())
	if err != nil {
		t.Fatalf("verify on a healthy leader: %v", err)
	}
	if since.After(time.Now()) || before.Sub(since) > time.Second {
		t.Errorf("verify's proof %v is not a recent heartbeat (called at %v)", since, before)
	}
	tc.partition(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = c.VerifyLeader(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("verify with an expiring context on a cut-off leader: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("returned after %v, long after its context ended", d)
	}
	canceled, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if _, err := c.VerifyLeader(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("verify with a canceled context: %v", err)
	}
	// Shutdown while raft may still be verifying: it waits for raft's answer, then stops.
	go c.VerifyLeader(context.Background())
	tc.kill(leader)
	if _, err := c.VerifyLeader(context.Background()); !errors.Is(err, ErrNotStarted) {
		t.Errorf("verify after shutdown: %v", err)
	}
}

// TestReapAfter: with ReapAfter set, a voter that gossip has reported failed for that long is removed
// (quorum allows it: 3 voters, 1 failed), and the survivors keep leading.
func TestReapAfter(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt, func(_ int, cfg *Config) { cfg.ReapAfter = time.Second })
	leader := tc.stable()
	victim := (leader + 1) % 3
	name := tc.nodes[victim].cfg.NodeName
	tc.kill(victim)
	killed := time.Now()
	testutil.WaitFor(t, 5*time.Second, "victim dead in gossip", func() bool { return tc.statusOf(leader, name) == StatusDead })
	testutil.WaitFor(t, 10*time.Second, "victim reaped", func() bool {
		v := tc.voters(leader)
		return len(v) == 2 && !containsName(v, name)
	})
	if d := time.Since(killed); d < time.Second {
		t.Errorf("reaped %v after the crash, before ReapAfter", d)
	}
	// The configuration shows the removal as soon as it is appended; the log line follows its commit.
	testutil.WaitFor(t, 5*time.Second, "the reap logged", func() bool {
		return tc.nodes[leader].logs.ContainsLine("reap: removed", "peer="+name)
	})
	if !tc.nodes[leader].c.IsLeader() {
		t.Error("leader lost leadership")
	}
}

func containsName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// TestQuorumWithout is reap's and force-leave's rule: a voter may go only if the voters left keep a quorum
// of alive ones.
func TestQuorumWithout(t *testing.T) {
	c := &Cluster{cfg: Config{NodeName: "a"}, members: newMemberTable()}
	set := func(name string, st MemberStatus) {
		c.members.nodes[name] = &memberRecord{name: name, status: st}
	}
	voters := func(names ...string) raft.Configuration {
		var cfg raft.Configuration
		for _, n := range names {
			cfg.Servers = append(cfg.Servers, raft.Server{ID: raft.ServerID(n), Suffrage: raft.Voter})
		}
		cfg.Servers = append(cfg.Servers, raft.Server{ID: "learner", Suffrage: raft.Nonvoter})
		return cfg
	}
	set("b", StatusAlive)
	set("c", StatusDead)
	set("d", StatusDead)
	set("e", StatusAlive)
	for _, tt := range []struct {
		cfg                      raft.Configuration
		remove                   string
		remaining, alive, quorum int
	}{
		{voters("a", "b", "c"), "c", 2, 2, 2},           // 3 voters, one dead: reapable
		{voters("a", "c", "d"), "c", 2, 1, 2},           // the leader alone with two dead: never
		{voters("a", "b", "c", "d", "e"), "c", 4, 3, 3}, // 5 voters, two dead: one may go
		{voters("a", "b", "c", "d"), "d", 3, 2, 2},
	} {
		r, a, q := c.quorumWithout(tt.cfg, tt.remove)
		if r != tt.remaining || a != tt.alive || q != tt.quorum {
			t.Errorf("without %s of %v: %d remaining, %d alive, quorum %d; want %d, %d, %d", tt.remove, tt.cfg.Servers,
				r, a, q, tt.remaining, tt.alive, tt.quorum)
		}
	}
}
