package main

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// scenario is one kind of fault on the current leader, and how to undo it before the next trial.
type scenario struct {
	name    string
	window  time.Duration // observed after the fault
	fault   func(b *bench, leader *node) error
	restore func(b *bench, leader *node) error
	// deadAfterFault: the leader's process is gone, so its stale lo address (if any) cannot attract traffic and
	// is left out of the lo double-holder count; the ARP observer still counts what actually answers.
	deadAfterFault bool
}

// trial is what one fault did, as seen from the client namespace.
type trial struct {
	outage     time.Duration // longest gap between successful probes after the fault
	toNewNode  time.Duration // fault → first successful probe answered by another node; -1 = never
	arpTwo     time.Duration // request windows in which two MACs replied for the VIP
	arpOverlap time.Duration // time two MACs were each in an unbroken run of answers
	loTwo      time.Duration // time two live nodes had the VIP on lo
	failed     int           // failed probes
	macs       int           // distinct MACs that answered ARP for the VIP in the window (proves the observer sees)
	err        string
}

func scenarios(partitionFor time.Duration) []scenario {
	return []scenario{
		{
			name: "node crash (SIGKILL + link down)", window: 3 * time.Second, deadAfterFault: true,
			fault: func(b *bench, l *node) error {
				b.ps.signal(l.vipd, syscall.SIGKILL, 0)
				return b.t.setLink(l.name, false)
			},
			restore: func(b *bench, l *node) error {
				<-l.vipd.done
				if err := b.t.setLink(l.name, true); err != nil {
					return err
				}
				return b.c.startVipd(l)
			},
		},
		{
			name: "graceful stop (SIGTERM)", window: 3 * time.Second,
			fault: func(b *bench, l *node) error {
				b.ps.signal(l.vipd, syscall.SIGTERM, 0)
				return nil
			},
			restore: func(b *bench, l *node) error {
				select {
				case <-l.vipd.done:
				case <-time.After(10 * time.Second):
					b.ps.signal(l.vipd, syscall.SIGKILL, time.Second)
				}
				return b.c.startVipd(l)
			},
		},
		{
			name: fmt.Sprintf("leader cut from peers %s", partitionFor), window: partitionFor + 3*time.Second,
			fault: func(b *bench, l *node) error {
				var peers []string
				for _, n := range b.c.nodes {
					if n != l {
						peers = append(peers, b.t.nodeIP(n.idx))
					}
				}
				if err := b.t.partition(l.name, peers); err != nil {
					return err
				}
				b.healAt = time.Now().Add(partitionFor)
				return nil
			},
			restore: func(b *bench, l *node) error { return nil }, // healed inside the window
		},
		{
			name: "leader's backends down", window: 3 * time.Second,
			fault: func(b *bench, l *node) error {
				b.ps.signal(l.backend, syscall.SIGKILL, time.Second)
				return nil
			},
			restore: func(b *bench, l *node) error { return b.c.startBackend(l) },
		},
	}
}

// bench is one run of the scenarios against a cluster.
type bench struct {
	t      *topo
	ps     *procs
	c      *cluster
	obs    *observer
	lo     *loWatch
	healAt time.Time // partition: when to heal, zero = nothing to heal
}

// runTrial faults the current leader and measures what the client saw in the window after the fault.
func (b *bench) runTrial(ctx context.Context, sc scenario) (trial, error) {
	leaderName, err := b.c.waitStable(ctx, b.obs, b.lo, time.Second, 60*time.Second)
	if err != nil {
		return trial{}, err
	}
	l := b.c.node(leaderName)
	if l == nil {
		return trial{}, fmt.Errorf("leader %q is not a node of this cluster", leaderName)
	}
	fault := time.Now()
	if err := sc.fault(b, l); err != nil {
		return trial{}, fmt.Errorf("fault: %w", err)
	}
	end := fault.Add(sc.window)
	for time.Now().Before(end) && ctx.Err() == nil {
		if !b.healAt.IsZero() && time.Now().After(b.healAt) {
			if err := b.t.heal(l.name); err != nil {
				return trial{}, fmt.Errorf("heal: %w", err)
			}
			b.healAt = time.Time{}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !b.healAt.IsZero() {
		b.t.heal(l.name)
		b.healAt = time.Time{}
	}
	time.Sleep(100 * time.Millisecond) // let the last probes of the window finish (budget 50 ms)
	w, err := b.obs.window(fault.Add(-time.Second), end)
	if err != nil {
		return trial{}, err
	}
	tr := measureTrial(w, fault, end, leaderName)
	var exclude []string
	if sc.deadAfterFault {
		exclude = []string{leaderName}
	}
	tr.loTwo = b.lo.overlap(fault, end, exclude...)
	if err := sc.restore(b, l); err != nil {
		return tr, fmt.Errorf("restore: %w", err)
	}
	return tr, nil
}

func measureTrial(w window, fault, end time.Time, oldLeader string) trial {
	o := probe.Measure(w.Samples, fault, end)
	tr := trial{outage: o.Longest, toNewNode: -1, failed: o.Failed,
		arpTwo: w.ARP.TwoMACTime, arpOverlap: w.ARP.Overlap, macs: len(w.ARP.Answers)}
	samples := slices.Clone(w.Samples)
	slices.SortFunc(samples, func(a, b probe.Sample) int { return a.Start.Compare(b.Start) })
	for _, s := range samples {
		if s.Start.Before(fault) || !s.OK || s.Backend == oldLeader {
			continue
		}
		tr.toNewNode = s.Start.Add(s.Latency).Sub(fault)
		break
	}
	if !o.Recovered {
		tr.err = "client never recovered in the window"
	}
	return tr
}
