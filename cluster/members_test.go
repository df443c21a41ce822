package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// TestMembersSuspectAfterKill: `vipd members` on a survivor must stop calling a freshly killed node alive
// once its probes have failed for a probe round, before memberlist declares it dead (memberlist v0.7 never
// exposes its own suspect state, so before suspectAfter existed Members said alive until dead, ~3 s).
// Every survivor is sampled in one loop so each one's suspect phase is seen.
func TestMembersSuspectAfterKill(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.stable()
	victim := (leader + 1) % 3
	name := tc.nodes[victim].cfg.NodeName
	var survivors []int
	for i := range tc.nodes {
		if i != victim {
			survivors = append(survivors, i)
			testutil.WaitFor(t, 5*time.Second, "all alive", func() bool { return tc.statusOf(i, name) == StatusAlive })
		}
	}
	// Stable cluster: no false suspicion over a few probe rounds.
	consistently(t, 3*time.Second, "no false suspicion", func() error {
		for _, i := range survivors {
			for _, m := range tc.nodes[i].c.Members() {
				if m.Status != StatusAlive {
					return fmt.Errorf("n%d reports %s %s in a stable cluster", i+1, m.Name, m.Status)
				}
			}
		}
		return nil
	})
	killed := time.Now()
	tc.kill(victim)
	seen := make([]map[MemberStatus]time.Duration, len(tc.nodes))
	for _, i := range survivors {
		seen[i] = map[MemberStatus]time.Duration{}
	}
	testutil.WaitFor(t, 10*time.Second, name+" dead on every survivor", func() bool {
		done := true
		for _, i := range survivors {
			st := tc.statusOf(i, name)
			if _, ok := seen[i][st]; !ok {
				seen[i][st] = time.Since(killed)
			}
			done = done && st == StatusDead
		}
		return done
	})
	limit := suspectAfter(2, 0) + 300*time.Millisecond
	for _, i := range survivors {
		sus, ok := seen[i][StatusSuspect]
		t.Logf("n%d: %s suspect after %v (seen %v), dead after %v", i+1, name, sus, ok, seen[i][StatusDead])
		if !ok || sus > seen[i][StatusDead] {
			t.Errorf("n%d never reported the killed %s suspect before dead", i+1, name)
		} else if sus > limit {
			t.Errorf("n%d listed the killed %s as alive for %v, want at most %v", i+1, name, sus, limit)
		}
	}
}
