package vip_test

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip"
	"github.com/vipd/vipd/vip/viptest"
)

// TestFakeClusterAtMostOneHolder runs three Managers on one FakeNetwork and moves leadership around
// as Raft would (the old leader steps down, then a new one is elected); the network fails the test
// the instant two nodes hold the VIP, and clients must follow each holder. Timing-faithful versions
// with real Raft are the cluster tests of this package, which use the same FakeNetwork.
func TestFakeClusterAtMostOneHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := viptest.NewFakeNetwork(t)
		names := []string{"n1", "n2", "n3"}
		leads := make([]*viptest.FakeLeadership, len(names))
		mgrs := make([]*vip.Manager, len(names))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, len(names))
		for i, name := range names {
			leads[i] = viptest.NewFakeLeadership()
			m, err := vip.NewManager(vip.Config{
				VIPs: []netip.Prefix{vip4}, RaftHeartbeat: 15 * time.Millisecond, Announce: true,
				BurstInterval: 2 * time.Millisecond, GARPRefresh: 10 * time.Millisecond, Logger: testutil.Logger(t),
			}, leads[i], viptest.NewFakeHealth(), net.Kernel(name))
			if err != nil {
				t.Fatal(err)
			}
			mgrs[i] = m
			go func() { done <- m.Run(ctx) }()
		}
		t.Cleanup(func() {
			cancel()
			for range names {
				<-done
			}
			if h := net.Holders(ip4); len(h) != 0 {
				t.Errorf("holders after shutdown: %v", h)
			}
		})

		leader := -1
		for round := 0; round < 12; round++ {
			next := (round * 2) % len(names) // 0, 2, 1, 0, ...
			if leader >= 0 {
				// Raft elects a new leader only after the old one's lease ran out and it stepped down.
				old := leader
				leads[old].SetLeader(false)
				testutil.WaitFor(t, 2*time.Second, "old leader released", func() bool { return !mgrs[old].Held() })
			}
			leader = next
			leads[leader].SetLeader(true)
			testutil.WaitFor(t, 2*time.Second, "new leader holds the VIP and clients follow it", func() bool {
				return mgrs[leader].Held() && net.Owner(ip4) == names[leader]
			})
		}
		if got := net.MaxHolders(ip4); got != 1 {
			t.Fatalf("max simultaneous holders %d, want 1", got)
		}
	})
}
