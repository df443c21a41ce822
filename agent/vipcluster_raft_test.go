package agent

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// These tests run vip.Manager against a REAL Raft cluster (hashicorp/raft over TCP, memberlist over
// UDP/TCP, on 127.x.y.z loopback addresses) with only the kernel faked: every node's FakeKernel sits on
// one FakeNetwork that fails the test the instant two nodes hold or answer for the VIP. Each test ends
// with that invariant checked again and, where a leader exists, exactly one holder: the leader.

// failoverBound bounds fault → VIP on a new node. The expected figure is 1.5-3 heartbeat timeouts for a
// crash (detection, election, barrier: 150-300 ms at the product's defaults, twice that with the test
// timings); the bound leaves room for -race and two shared cores.
const failoverBound = 5 * time.Second

func TestClusterFormationOneHolderIsLeader(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	h := vc.waitHolder(15*time.Second, "one holder, the raft leader")
	vc.waitVoters(3)
	// Formation is done; the holder stays put with nothing happening (no spurious release/re-acquire).
	before := vc.nodes[h].acquisitions()
	vc.stableFor(3*clusterGARPRefresh, "the leader holding alone", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == h
	})
	if got := vc.nodes[h].acquisitions(); got != before {
		t.Errorf("%s re-acquired the VIP %d times while stable", vc.nodes[h].name, got-before)
	}
	for i, nd := range vc.nodes {
		if i != h && (nd.m.Held() || nd.kernel.Answering()) {
			t.Errorf("follower %s holds or answers for the VIP", nd.name)
		}
	}
	vc.assertInvariant()
}

func TestClusterLeaderKill(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	old := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	start := time.Now()
	vc.kill(old) // raft and gossip die; the Manager must release on the leadership signal alone
	testutil.WaitFor(t, time.Second, "the crashed node's Manager to release", func() bool {
		return !vc.nodes[old].m.Held() && !vc.nodes[old].kernel.Has(clusterIP)
	})
	released := time.Since(start)
	nh := vc.waitHolderNot(failoverBound, "a new holder after the leader crashed", old)
	t.Logf("crash of %s: released after %v, VIP on %s after %v", vc.nodes[old].name, released,
		vc.nodes[nh].name, time.Since(start))
	vc.stopManager(old)
	vc.stableFor(2*clusterGARPRefresh, "the new holder", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == nh
	})
	vc.assertInvariant()
}

func TestClusterGracefulLeaveOfHolder(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	old := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	start := time.Now()
	// The agent's shutdown order: the VIP goes first, then the node leaves (transferring leadership).
	vc.stopManager(old)
	stopped := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vc.nodes[old].down = true
	leaveDone := make(chan error, 1)
	go func() { leaveDone <- vc.nodes[old].c.Leave(ctx) }()
	nh := vc.waitHolderNot(failoverBound, "a new holder after the holder left", old)
	t.Logf("graceful leave of %s: Manager stopped after %v, VIP on %s after %v", vc.nodes[old].name, stopped,
		vc.nodes[nh].name, time.Since(start))
	if err := <-leaveDone; err != nil {
		t.Errorf("leave %s: %v", vc.nodes[old].name, err)
	}
	vc.stableFor(2*clusterGARPRefresh, "the new holder", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == nh
	})
	vc.assertInvariant()
}

// TestClusterHealthFlap: an unhealthy holder hands the VIP (and leadership) to a healthy node; when it
// recovers the VIP does not come back (no preemption); when every node is unhealthy the leader keeps it.
func TestClusterHealthFlap(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	first := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	for i := range vc.nodes {
		if i != first {
			vc.waitSeesHealth(first, i, true)
		}
	}

	start := time.Now()
	vc.nodes[first].health.Set(false, "test: backends down")
	second := vc.waitHolderNot(failoverBound, "VIP on a healthy node after the holder turned unhealthy", first)
	t.Logf("unhealthy %s: VIP on %s after %v", vc.nodes[first].name, vc.nodes[second].name, time.Since(start))

	// The old holder recovers: nothing moves back, nobody re-acquires.
	vc.nodes[first].health.Set(true, "")
	for i := range vc.nodes {
		if i != first {
			vc.waitSeesHealth(i, first, true)
		}
	}
	acq := vc.nodes[first].acquisitions()
	vc.stableFor(3*clusterGARPRefresh, "the VIP staying on "+vc.nodes[second].name, func() bool {
		i, ok := vc.soleHolder()
		return ok && i == second
	})
	if got := vc.nodes[first].acquisitions(); got != acq {
		t.Errorf("recovered %s re-acquired the VIP (flap back)", vc.nodes[first].name)
	}

	// Everyone else unhealthy first, seen by the holder through gossip; then the holder too: it keeps
	// the VIP, since an address on an unhealthy proxy recovers the instant a backend returns.
	for i := range vc.nodes {
		if i != second {
			vc.nodes[i].health.Set(false, "test: all down")
			vc.waitSeesHealth(second, i, false)
		}
	}
	vc.nodes[second].health.Set(false, "test: all down")
	vc.stableFor(3*clusterGARPRefresh, "the unhealthy leader keeping the VIP", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == second
	})
	vc.assertInvariant()
}

// TestClusterAllUnhealthyAtOnce flips every node unhealthy at the same instant, before gossip can tell
// anyone that the peers are unhealthy too: hand-offs may happen while views are stale, but the VIP must
// settle on the leader and stay there, never on two nodes.
func TestClusterAllUnhealthyAtOnce(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	for _, nd := range vc.nodes {
		nd.health.Set(false, "test: all down")
	}
	for i := range vc.nodes {
		for j := range vc.nodes {
			if i != j {
				vc.waitSeesHealth(i, j, false)
			}
		}
	}
	h := vc.waitHolder(failoverBound, "the VIP settling on the (unhealthy) leader")
	vc.stableFor(3*clusterGARPRefresh, "the unhealthy leader keeping the VIP", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == h
	})
	vc.assertInvariant()
}

// TestClusterRapidHandOffs moves the VIP 20 times in a row the way vipd moves it while running: the
// holder turns unhealthy, its Manager releases, then transfers leadership to a healthy peer, whose
// Manager acquires after its barrier. Each hand-off starts as soon as the previous one completed (the
// new holder holds the VIP and sees a healthy peer to hand to).
func TestClusterRapidHandOffs(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	h := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	const handOffs = 20
	start := time.Now()
	for range handOffs {
		testutil.WaitFor(t, failoverBound, vc.nodes[h].name+" to see a healthy peer", func() bool {
			for _, p := range (clusterLeadership{vc.nodes[h].c, vc.nodes[h].name}).Peers() {
				if p.Healthy && p.Voter {
					return true
				}
			}
			return false
		})
		vc.nodes[h].health.Set(false, "test: hand-off")
		next := vc.waitHolderNot(failoverBound, "the VIP to leave unhealthy "+vc.nodes[h].name, h)
		vc.nodes[h].health.Set(true, "")
		h = next
	}
	t.Logf("%d health hand-offs in %v", handOffs, time.Since(start))
	vc.stableFor(2*clusterGARPRefresh, "the final holder alone", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == h
	})
	vc.assertInvariant()
}

// rawTransfersEnv enables TestClusterRapidRawTransfers, which shows a known violation (see there).
const rawTransfersEnv = "VIPD_TEST_RAW_TRANSFERS"

// TestClusterRapidRawTransfers moves leadership 20 times in a row with raw Raft transfers that bypass the
// Manager (so nobody releases first): only the leadership-lost signal can make the old holder release.
// "back-to-back" starts each transfer as soon as the previous one completed (about half of the leaders
// get to acquire); "from-holder" waits until the new leader holds the VIP each time, so every transfer
// takes the VIP away from a holder.
//
// KNOWN VIOLATION, hence skipped unless VIPD_TEST_RAW_TRANSFERS=1: the transfer target starts its
// election at once (TimeoutNow) and wins it, and commits its barrier, with the third node's vote and ack
// alone, so nothing waits for the old leader; its Manager learns of the step-down only through raft's
// NotifyCh after raft's leader-loop cleanup, a few milliseconds later. In about 1 of 7 runs of
// "from-holder" (20 transfers each; with and without -race) the new leader adds the VIP about 1 ms
// before the old one removes it: two holders, two ARP responders. The lease argument (lease ≤ heartbeat)
// covers elections started by a timeout, not by a transfer. vipd itself never transfers a held VIP
// this way (Manager.handOff releases first; the agent stops the Manager before cluster.Leave), which
// TestClusterRapidHandOffs and TestClusterGracefulLeaveOfHolder check.
func TestClusterRapidRawTransfers(t *testing.T) {
	if os.Getenv(rawTransfersEnv) == "" {
		t.Skipf("known violation: a raw raft transfer of a held VIP can overlap two holders for ~1 ms; set %s=1 to run", rawTransfersEnv)
	}
	for _, tc := range []struct {
		name       string
		fromHolder bool
	}{{"back-to-back", false}, {"from-holder", true}} {
		t.Run(tc.name, func(t *testing.T) {
			vc := newVIPCluster(t, 3, vipClusterOpts{})
			vc.waitHolder(15*time.Second, "first holder")
			vc.waitVoters(3)
			acq0 := vc.totalAcquisitions()
			const transfers = 20
			start := time.Now()
			for done, failed := 0, 0; done < transfers; {
				var l int
				if tc.fromHolder {
					l = vc.waitHolder(failoverBound, "the new leader to hold the VIP")
				} else {
					testutil.WaitFor(t, failoverBound, "a leader to transfer from", func() bool {
						ls := vc.leaders()
						if len(ls) == 1 {
							l = ls[0]
						}
						return len(ls) == 1
					})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				err := vc.nodes[l].c.TransferLeadership(ctx, "")
				cancel()
				if err != nil {
					// Raft refuses a transfer while the previous one is still settling; that is
					// not a VIP failure, but it must stay rare.
					t.Logf("transfer %d from %s: %v", done+1, vc.nodes[l].name, err)
					if failed++; failed > transfers {
						t.Fatalf("%d transfers failed", failed)
					}
					continue
				}
				done++
			}
			final := vc.waitHolder(failoverBound, "the VIP on the final leader")
			acq := vc.totalAcquisitions() - acq0
			t.Logf("%d transfers in %v; %d acquisitions", transfers, time.Since(start), acq)
			if tc.fromHolder && acq < transfers {
				t.Errorf("only %d acquisitions for %d transfers from a holder", acq, transfers)
			}
			vc.stableFor(2*clusterGARPRefresh, "the final leader holding alone", func() bool {
				i, ok := vc.soleHolder()
				return ok && i == final
			})
			vc.assertInvariant()
		})
	}
}

// TestClusterVerifyLeaderAfterShutdown: the Manager's shutdown waits for its VerifyLeader in flight, so the
// cluster adapter must answer it even when the node's raft has just been shut down (as in TestClusterLeaderKill).
// hashicorp/raft v1.8.0 never answers a verification that it queues while shutting down (its verify future has
// no shutdown channel) and queues one half of the time after shutdown, so every call here must come back.
func TestClusterVerifyLeaderAfterShutdown(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	h := vc.waitHolder(15*time.Second, "first holder")
	vc.stopManager(h)
	vc.kill(h)
	lead := clusterLeadership{vc.nodes[h].c, vc.nodes[h].name}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errc := make(chan error, 1)
		go func() { _, err := lead.VerifyLeader(ctx); errc <- err }()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatalf("call %d: a shut-down node verified its leadership", i)
			}
		case <-time.After(5 * time.Second):
			cancel()
			t.Fatalf("call %d: VerifyLeader on a shut-down node did not return (ctx expired 4 s ago)", i)
		}
		cancel()
	}
}
