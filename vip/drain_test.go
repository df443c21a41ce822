package vip_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vipd/vipd/vip"
)

func drainRig(t *testing.T) *rig {
	return newRig(t, func(c *vip.Config) {
		c.HandoverDrain, c.Ports, c.DrainTimeout = true, []uint16{6443}, 2*time.Second
	})
}

// TestHandOffKeepsConnectionsWhileDraining: a holder that hands off on purpose (here: it turned unhealthy
// and a healthy peer exists) records a drain while it leads, stops answering but keeps the address for its
// open connections, and gives the address up once none is left.
func TestHandOffKeepsConnectionsWhileDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.l.SetPeers(vip.Peer{Name: "n2", Healthy: true, Voter: true})
		r.start(t)
		synctest.Wait()
		if !r.k.Marked() {
			t.Fatal("the flow-marking rules were not installed before taking traffic")
		}
		r.lead(t)
		r.k.SetEstablished(3) // three clients connected through the VIP
		r.h.Set(false, "test: backends down")
		synctest.Wait()
		if d := r.l.StartedDrains(); len(d) != 1 {
			t.Fatalf("drains recorded: %+v, want one, before the transfer", d)
		}
		if r.m.Held() || r.k.Answering() {
			t.Fatal("still answering for the VIP after handing off")
		}
		if !r.k.Has(ip4) || !r.k.Draining(ip4) || r.m.Draining() == 0 {
			t.Fatal("the address is gone: the open connections would be reset")
		}
		if i, j := r.events.Index("raft:drain", 0), r.events.Index("raft:transfer n2", 0); i < 0 || j < i {
			t.Errorf("drain recorded at %d, transfer at %d: the successor's barrier must see the record", i, j)
		}
		sleep(time.Second) // connections still open: the drain goes on
		if !r.k.Has(ip4) {
			t.Fatal("drain ended with connections still open")
		}
		r.k.SetEstablished(0)
		sleep(200 * time.Millisecond)
		if r.k.Has(ip4) || r.m.Draining() != 0 {
			t.Fatal("drain not over once the last connection closed")
		}
	})
}

// TestDrainingWhileTheDrainIsRecorded: from before the drain record is committed (the cluster may apply it,
// and so know it as this node's latest, before StartDrain returns) until the drain ends, Draining must not
// say "not draining": the agent gossips every own drain as done then, and the successor stopped forwarding
// before the drain began (all drained connections reset, seen by integration/handover).
func TestDrainingWhileTheDrainIsRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.start(t)
		r.lead(t)
		r.k.SetEstablished(1)
		var during uint64
		r.l.OnStartDrain(func() { during = r.m.Draining() })
		done, err := r.m.Handover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if during != vip.DrainPending {
			t.Errorf("Draining() while the drain was being recorded = %d, want DrainPending", during)
		}
		d := r.l.StartedDrains()
		if len(d) != 1 || r.m.Draining() != d[0].Epoch {
			t.Fatalf("Draining() = %d after the drain %+v was recorded, want its epoch", r.m.Draining(), d)
		}
		r.k.SetEstablished(0)
		<-done
		if r.m.Draining() != 0 {
			t.Errorf("Draining() = %d after the drain ended, want 0", r.m.Draining())
		}
	})
}

// TestDrainEndsAtTheTimeout: connections that never close are given up at DrainTimeout.
func TestDrainEndsAtTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.start(t)
		r.lead(t)
		r.k.SetEstablished(1)
		done, err := r.m.Handover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("drain over at once with a connection open")
		default:
		}
		<-done
		if d := time.Since(start); d < 2*time.Second || d > 2*time.Second+200*time.Millisecond {
			t.Errorf("drain ended after %v, want DrainTimeout (2s)", d)
		}
		// What is left can no longer be reached: reset once the address is gone, not left to TCP's timers.
		if i, j := r.events.Index("kernel:del "+ip4.String(), 0), r.events.Index("kernel:reset", 0); j < 0 || j < i {
			t.Errorf("address removed at event %d, connections reset at %d: want a reset after the removal", i, j)
		}
		if r.k.Has(ip4) {
			t.Error("address still configured after the drain")
		}
		// Leaving: leadership seen again does not bring the VIP back.
		r.l.SetLeader(true)
		sleep(100 * time.Millisecond)
		if r.m.Held() {
			t.Error("a node that handed over for good took the VIP again")
		}
	})
}

// TestSuccessorForwardsBeforeItAnswers: the node taking the VIP over forwards the flows it does not know to
// the latest drain under way — set up before its first ARP answer — and stops once that drain is over.
func TestSuccessorForwardsBeforeItAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		old := netip.MustParseAddr("10.0.0.11")
		r.l.SetActiveDrains([]vip.Drain{
			{Node: "n0", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}, Epoch: 3},
			{Node: "n1", Addrs: []netip.Addr{old}, Epoch: 7},
		})
		r.start(t)
		r.lead(t)
		if got := r.k.ForwardingTo(); len(got) != 1 || got[0] != old {
			t.Fatalf("forwarding to %v, want the latest drainer %v", got, old)
		}
		if f, a := r.events.Index("kernel:forward [10.0.0.11]", 0), r.events.Index("kernel:answer-start", 0); f < 0 || a < f {
			t.Errorf("forward set up at %d, first answer at %d: the predecessor's flows would meet a reset", f, a)
		}
		r.l.SetActiveDrains(nil) // n1 gossiped that its drain is over, or left, or died
		sleep(200 * time.Millisecond)
		if got := r.k.ForwardingTo(); got != nil {
			t.Errorf("still forwarding to %v after the drain ended", got)
		}
	})
}

// TestRelayKeepsDraining: a node that forwards to its own predecessor keeps its address (and so the relay)
// while that predecessor drains, even with no connection of its own left.
func TestRelayKeepsDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.l.SetActiveDrains([]vip.Drain{{Node: "n1", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, Epoch: 5}})
		r.start(t)
		r.lead(t)
		done, err := r.m.Handover(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sleep(500 * time.Millisecond)
		select {
		case <-done:
			t.Fatal("drain over while relaying the predecessor's flows")
		default:
		}
		r.l.SetActiveDrains(nil)
		sleep(300 * time.Millisecond)
		select {
		case <-done:
		default:
			t.Fatal("drain not over once the predecessor was done and no connection was left")
		}
	})
}

// TestLeavingNodeHandsLeadershipOn: leadership that reaches a node after Handover (a successor's own
// hand-over chose it, or an election) is passed on at once to the best successor, and the node never takes
// the VIP again. Before, it kept leadership without the VIP until its drain ended: nobody held the VIP for up
// to DrainTimeout (seen by integration/handover, the holder's successor chosen among draining peers).
func TestLeavingNodeHandsLeadershipOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.start(t)
		r.lead(t)
		r.k.SetEstablished(1) // the drain goes on
		if _, err := r.m.Handover(context.Background()); err != nil {
			t.Fatal(err)
		}
		r.l.SetLeader(false) // the agent's own transfer
		synctest.Wait()
		r.l.SetPeers(vip.Peer{Name: "n2", Healthy: true, Voter: true}, vip.Peer{Name: "n3", Voter: true})
		before := len(r.l.Transfers())
		r.l.SetLeader(true) // n2's hand-over (or an election) chose this leaving node
		synctest.Wait()
		if got := r.l.Transfers()[before:]; len(got) != 1 || got[0] != "n2" {
			t.Errorf("transfers after leadership came back to the leaving node: %v, want [n2]", got)
		}
		if r.m.Held() || r.k.Answering() {
			t.Error("the leaving node took the VIP again")
		}
	})
}

// TestStopResetsUnreachableFlows: a node that stops, hand-over drains on or off, resets its connections
// through the VIP once the address is gone (no packet of theirs can reach it), after removing the address.
func TestStopResetsUnreachableFlows(t *testing.T) {
	for _, drain := range []bool{true, false} {
		t.Run(fmt.Sprintf("drain=%v", drain), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRig(t, func(c *vip.Config) { c.HandoverDrain, c.Ports = drain, []uint16{6443} })
				r.start(t)
				r.lead(t)
				r.k.SetEstablished(2)
				r.stop(t)
				del, reset := r.events.Index("kernel:del "+ip4.String(), 1), r.events.Index("kernel:reset", 0)
				if reset < 0 || reset < del {
					t.Errorf("events %v: want the connections reset after the address went", r.events.Events())
				}
			})
		})
	}
}

// TestAddedPortsExtendTheFlowRules: a reload that adds a frontend on a new port extends the mark rules at
// once, and the forwarding rules of a predecessor's drain under way, without a restart; a port a reload
// removed stays (its connections may still drain). A port of 0 is refused naming the field.
func TestAddedPortsExtendTheFlowRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := drainRig(t)
		r.l.SetActiveDrains([]vip.Drain{{Node: "n1", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.11")}, Epoch: 5}})
		r.start(t)
		r.lead(t)
		if got := r.k.MarkedPorts(); !slices.Equal(got, []uint16{6443}) {
			t.Fatalf("marked ports %v at start, want [6443]", got)
		}
		if err := r.m.AddPorts(8443, 6443); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		want := []uint16{6443, 8443}
		if got := r.k.MarkedPorts(); !slices.Equal(got, want) {
			t.Errorf("marked ports %v after AddPorts, want %v", got, want)
		}
		if got := r.k.ForwardedPorts(); !slices.Equal(got, want) {
			t.Errorf("forwarded ports %v after AddPorts while forwarding, want %v", got, want)
		}
		if got := r.m.Ports(); !slices.Equal(got, want) {
			t.Errorf("Ports() = %v, want %v", got, want)
		}
		countMarks := func() (n int) {
			for _, e := range r.events.Events() {
				if strings.HasPrefix(e, "kernel:mark") {
					n++
				}
			}
			return n
		}
		marks := countMarks()
		if err := r.m.AddPorts(8443); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := countMarks(); n != marks {
			t.Errorf("rules installed again (%d → %d marks) for a port already covered", marks, n)
		}
		err := r.m.AddPorts(0)
		if err == nil || !strings.Contains(err.Error(), "Ports") {
			t.Errorf("AddPorts(0) = %v, want an error naming Ports", err)
		}
		if got := r.m.Ports(); !slices.Equal(got, want) {
			t.Errorf("Ports() = %v after a refused AddPorts, want %v", got, want)
		}
	})
}
