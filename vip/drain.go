package vip

import (
	"context"
	"time"
)

// This file hands a planned VIP move over without resetting a connection (issue 12; vip/flowfwd has the
// kernel side, package cluster the replicated record). The old holder records a drain while it still leads,
// releases the VIP but keeps the address (Forwarder.Drain) to serve the flows it has, and ends the drain once
// none is left or DrainTimeout passed. The node that takes the VIP over looks, after its barrier and before
// it answers ARP, for the latest drain under way and forwards to that node every packet of a flow it does not
// know; it keeps doing so, holder or not, until that node's drain ends or gossip stops seeing it alive, so
// successive hand-overs chain (C forwards to B, B to A) and a crashed drainer is never forwarded to.

// deadFlowAfter is how long a drained connection may wait for its client to acknowledge anything before it
// counts as gone. While this node drains, its successor forwards every packet of the client's here, so a
// client that still has the connection answers a retransmission within its RTO; one whose end is gone (it
// reset the flow while its packets still went to another node, say) never does, and the kernel alone would
// keep retrying for up to 15 minutes (tcp_retries2), holding the drain open for all of -drain-timeout.
const deadFlowAfter = 10 * time.Second

// drainPoll is how often a drain's connections and a forward target's liveness are checked: quick enough
// that a crashed drainer stops being forwarded to soon after gossip notices, cheap enough to run all along.
const drainPoll = 100 * time.Millisecond

// drainState is this node's own drain under way.
type drainState struct {
	epoch    uint64
	deadline time.Time
	done     chan struct{} // closed when the drain ends
}

// forwarder returns the kernel's Forwarder when hand-over drains are on, else nil.
func (l *loop) forwarder() Forwarder {
	if !l.cfg.HandoverDrain || l.cfg.Witness {
		return nil
	}
	fw, _ := l.m.kernel.(Forwarder)
	return fw
}

// mark installs the rules that remember this node's own flows, once, before it may take traffic.
func (l *loop) mark() {
	fw := l.forwarder()
	if fw == nil {
		return
	}
	if err := fw.Mark(l.ips(), l.m.Ports()); err != nil {
		l.log.Error("hand-over drains off: cannot install the flow rules", "err", err)
		l.cfg.HandoverDrain = false
	}
}

// onPortsAdded extends the flow rules to the ports AddPorts added: the mark rules at once (a new
// frontend's flows must be known as this node's before a hand-over), the forwarding rules too while this
// node forwards a predecessor's flows. Drains stay on when it fails: the old ports' flows keep their rules.
func (l *loop) onPortsAdded() {
	fw := l.forwarder()
	if fw == nil {
		return
	}
	ports := l.m.Ports()
	if err := fw.Mark(l.ips(), ports); err != nil {
		l.log.Error("hand-over drains do not cover the added frontends' ports: cannot install the flow rules", "ports", ports, "err", err)
		return
	}
	if l.fwd != nil {
		if err := fw.Forward(l.fwd.Addrs, l.ips(), ports); err != nil {
			l.log.Error("forward the added frontends' ports to the previous holder", "to", l.fwd.Node, "ports", ports, "err", err)
			return
		}
	}
	l.log.Info("hand-over drains cover the frontends' ports", "ports", ports)
}

// releaseForHandover releases the VIP for a planned move. With drains on, and while this node leads, it
// first records a drain, then keeps the address to serve its flows; otherwise it is a plain release. It
// returns a channel closed when the drain (if any) ends.
func (l *loop) releaseForHandover(why string) <-chan struct{} {
	fw := l.forwarder()
	if fw == nil || !l.held || !l.leader {
		l.release(why)
		return closedChan
	}
	addrs, err := fw.SegmentAddrs(l.ips())
	var epoch uint64
	if err == nil {
		l.m.setDraining(DrainPending) // before the record can be applied: see DrainPending
		ctx, cancel := context.WithTimeout(l.ctx, l.cfg.BarrierTimeout)
		epoch, err = l.m.lead.StartDrain(ctx, addrs)
		cancel()
	}
	if err != nil {
		l.m.setDraining(0)
		l.log.Warn("hand-over without drain: open connections through the VIP will be reset", "why", why, "err", err)
		l.release(why)
		return closedChan
	}
	l.releaseKeeping(why)
	l.drain = &drainState{epoch: epoch, deadline: time.Now().Add(l.cfg.DrainTimeout), done: make(chan struct{})}
	l.m.setDraining(epoch)
	l.log.Info("draining: serving the open connections through the VIP while the successor forwards them",
		"epoch", epoch, "addrs", addrs, "timeout", l.cfg.DrainTimeout)
	l.after(&l.drainTick, drainPoll)
	return l.drain.done
}

// onDrainTick checks this node's drain (over when no connection is left, or at its deadline) and its forward
// target (still draining and alive?).
func (l *loop) onDrainTick() {
	if d := l.drain; d != nil {
		n, err := l.forwarder().Established(l.ips(), l.m.Ports(), deadFlowAfter)
		switch {
		case err == nil && n == 0 && l.fwd == nil:
			// Over only when this node relays nobody's flows either: while its own predecessor drains, the
			// successor's unknown flows reach that predecessor through this node's forwarding.
			l.endDrain("no connection left", true)
		case time.Now().After(d.deadline):
			l.endDrain("drain timeout", true)
		case err != nil:
			l.log.Debug("count drained connections", "err", err)
		}
	}
	l.syncForward(false)
	if l.drain != nil || l.fwd != nil {
		l.after(&l.drainTick, drainPoll)
	}
}

// endDrain ends this node's drain, and the agent's gossip says it is done. removeAddrs takes the address
// away; a node that holds the VIP again ends its drain keeping it (the flows are the holder's own again).
func (l *loop) endDrain(why string, removeAddrs bool) {
	d := l.drain
	if d == nil {
		return
	}
	l.drain = nil
	if removeAddrs {
		for _, p := range l.cfg.VIPs {
			if err := l.m.kernel.DelAddr(p); err != nil {
				l.log.Error("remove drained VIP", "vip", p, "err", err)
			}
		}
		l.resetFlows("drain over")
	}
	close(d.done)
	l.m.setDraining(0)
	l.log.Info("drain over", "why", why, "epoch", d.epoch)
}

// syncForward keeps the forwarding to this node's predecessor: when acquiring, it starts forwarding to the
// latest drain under way; at any time it stops once that drain is over or its node is gone.
func (l *loop) syncForward(acquiring bool) {
	fw := l.forwarder()
	if fw == nil {
		return
	}
	drains := l.m.lead.ActiveDrains()
	if l.fwd != nil {
		active := false
		for _, d := range drains {
			active = active || (d.Node == l.fwd.Node && d.Epoch == l.fwd.Epoch)
		}
		if !active {
			if err := fw.StopForward(); err != nil {
				l.log.Error("stop forwarding drained flows", "to", l.fwd.Node, "err", err)
			}
			l.log.Info("stopped forwarding: the peer's drain is over, or the peer is gone", "to", l.fwd.Node)
			l.fwd = nil
		}
	}
	if !acquiring || len(drains) == 0 {
		return
	}
	latest := drains[len(drains)-1]
	if l.fwd != nil && l.fwd.Node == latest.Node && l.fwd.Epoch == latest.Epoch {
		return
	}
	if err := fw.Forward(latest.Addrs, l.ips(), l.m.Ports()); err != nil {
		l.log.Error("forward the drained flows of the previous holder: they will be reset", "to", latest.Node, "err", err)
		return
	}
	l.fwd = &latest
	l.log.Info("forwarding flows this node does not know to the previous holder while it drains",
		"to", latest.Node, "addrs", latest.Addrs, "epoch", latest.Epoch)
	l.after(&l.drainTick, drainPoll)
}

// onHandover is Manager.Handover on the loop: release for good (this node is about to leave) and reply with
// the drain's end.
func (l *loop) onHandover(reply chan<- (<-chan struct{})) {
	l.leaving = true
	stopTimer(&l.retry)
	reply <- l.releaseForHandover("leaving")
}

// stopForwarding ends what this node does for drains when Run ends: its own drain (the address goes) and
// its forwarding (a stopping node forwards nothing). Then no packet can reach a connection through the VIP
// left on this node — one from an earlier move that lost the VIP without a drain, whose client's packets
// went to the new holder — and it is reset, so the proxy's own drain does not wait minutes for TCP's
// timers to end it.
func (l *loop) stopForwarding() {
	drained := l.drain != nil && !l.held
	l.endDrain("shutdown", !l.held) // a drain that ends here removes the address and resets what is left
	fw := l.forwarder()
	if fw != nil && l.fwd != nil {
		if err := fw.StopForward(); err != nil {
			l.log.Error("stop forwarding drained flows", "err", err)
		}
		l.fwd = nil
	}
	if !l.held && !drained {
		l.resetFlows("shutdown")
	}
}

// resetFlows resets this node's connections through the VIP once none of their packets can reach it.
func (l *loop) resetFlows(why string) {
	r, ok := l.m.kernel.(FlowResetter)
	if !ok || l.cfg.Witness || len(l.m.Ports()) == 0 {
		return
	}
	n, err := r.Reset(l.ips(), l.m.Ports())
	if err != nil {
		l.log.Warn("reset connections through the VIP that no packet can reach any more", "why", why, "err", err)
	}
	if n > 0 {
		l.log.Info("reset connections through the VIP that no packet can reach any more", "why", why, "count", n)
	}
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
