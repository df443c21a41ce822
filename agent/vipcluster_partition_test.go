package agent

import (
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// leaseReleaseBound bounds cut → the cut-off holder's release. Raft steps a leader down once it has not
// heard from a quorum for the lease (clusterLease, checked every lease period), so the release is expected
// after one to three leases; the bound leaves room for -race and two shared cores. Safety does not rest
// on it: the lease is shorter than the heartbeat timeout the majority must wait before electing, and the
// FakeNetwork fails the test if the new leader acquires before the old one released.
const leaseReleaseBound = time.Second

// TestClusterPartitionHolder cuts the VIP holder off from both peers (raft and gossip, both ways): the
// old holder releases within about the lease, the majority's leader takes the VIP, the cut-off node
// never holds it while cut off (its elections fail without a quorum), and after healing exactly one
// node holds it and it does not flap back.
func TestClusterPartitionHolder(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	old := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	start := time.Now()
	vc.partition(old)
	testutil.WaitFor(t, leaseReleaseBound, "the cut-off holder to release", func() bool {
		return !vc.nodes[old].m.Held() && !vc.nodes[old].kernel.Has(clusterIP)
	})
	released := time.Since(start)
	nh := vc.waitHolderNot(failoverBound, "the majority's leader to take the VIP", old)
	t.Logf("cut %s off: released after %v, VIP on %s after %v", vc.nodes[old].name, released,
		vc.nodes[nh].name, time.Since(start))

	// Minority side: for several election timeouts the cut-off node tries to lead and must never
	// acquire; the majority's holder stays.
	oldAcq := vc.nodes[old].acquisitions()
	vc.stableFor(time.Second, "majority holder alone while "+vc.nodes[old].name+" is cut off", func() bool {
		cut := vc.nodes[old]
		if cut.m.Held() || cut.kernel.Has(clusterIP) || cut.kernel.Answering() {
			t.Fatalf("cut-off %s holds or answers for the VIP", cut.name)
		}
		i, ok := vc.soleHolder()
		return ok && i == nh
	})

	vc.heal()
	vc.waitVoters(3) // gossip sees every node alive again
	vc.stableFor(4*clusterGARPRefresh, "the VIP staying on "+vc.nodes[nh].name+" after healing", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == nh
	})
	if got := vc.nodes[old].acquisitions(); got != oldAcq {
		t.Errorf("%s acquired the VIP %d times after being cut off (flap back)", vc.nodes[old].name, got-oldAcq)
	}
	vc.assertInvariant()
}

// TestClusterPartitionFollower cuts a follower off: the holder keeps the VIP undisturbed, the cut-off
// follower never holds it, and healing changes nothing.
func TestClusterPartitionFollower(t *testing.T) {
	vc := newVIPCluster(t, 3, vipClusterOpts{})
	h := vc.waitHolder(15*time.Second, "first holder")
	vc.waitVoters(3)
	f := (h + 1) % len(vc.nodes)
	hAcq, fAcq := vc.nodes[h].acquisitions(), vc.nodes[f].acquisitions()

	vc.partition(f)
	vc.stableFor(time.Second, "the holder keeping the VIP while follower "+vc.nodes[f].name+" is cut off", func() bool {
		if vc.nodes[f].m.Held() || vc.nodes[f].kernel.Has(clusterIP) {
			t.Fatalf("cut-off follower %s holds the VIP", vc.nodes[f].name)
		}
		i, ok := vc.soleHolder()
		return ok && i == h
	})
	vc.heal()
	vc.waitVoters(3)
	vc.stableFor(2*clusterGARPRefresh, "the holder keeping the VIP after healing", func() bool {
		i, ok := vc.soleHolder()
		return ok && i == h
	})
	if vc.nodes[h].acquisitions() != hAcq || vc.nodes[f].acquisitions() != fAcq {
		t.Errorf("VIP moved although only a follower was cut off (acquisitions %s %d→%d, %s %d→%d)",
			vc.nodes[h].name, hAcq, vc.nodes[h].acquisitions(), vc.nodes[f].name, fAcq, vc.nodes[f].acquisitions())
	}
	vc.assertInvariant()
}
