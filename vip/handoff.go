package vip

import (
	"context"
	"time"
)

// This file moves leadership away from this node: when it is unhealthy, a witness, or outranked by a
// healthy peer of higher priority. The VIP is always released first (see "Safety timing" in the package
// documentation: a transfer skips the election timeout that the answer fence relies on).

// Transfer tuning: a hand-off is tried a few times, then given up for a while so that a failing
// transfer cannot keep the VIP released.
const (
	transferAttempts = 3
	transferBackoff  = 50 * time.Millisecond // times the attempt number, between attempts
	cooldownRefresh  = 10                    // refresh periods without a new hand-off attempt after one failed
)

// onHealth hands leadership off when the holder is unhealthy and a healthier peer exists (peers.go).
func (l *loop) onHealth() {
	if !l.held || l.m.health == nil {
		return
	}
	h := l.m.health.Status()
	if h.Healthy {
		l.warnedKeep = false
		return
	}
	target, ok := healthierTarget(l.m.lead.Peers(), h)
	if !ok {
		if !l.warnedKeep {
			l.warnedKeep = true
			l.log.Warn("holder is unhealthy and no peer is healthier: keeping the VIP", "reason", h.Reason)
		}
		return
	}
	if time.Now().Before(l.noHandoffTill) {
		return
	}
	l.log.Warn("holder turned unhealthy; releasing the VIP and handing off to a healthier peer", "reason", h.Reason,
		"to", target.Name, "peer_healthy", target.Healthy, "peer_score", target.Score, "score", h.Score)
	l.handOff(target.Name, "unhealthy")
}

// checkPreempt hands off to a healthy peer of higher priority once the VIP has been held stably for
// PreemptDelay. While no such peer exists it is re-checked at every refresh.
func (l *loop) checkPreempt() {
	if !l.held || time.Now().Before(l.noHandoffTill) {
		return
	}
	prio := l.cfg.Priority
	target, ok := preemptTarget(l.m.lead.Peers(), prio)
	if !ok {
		return
	}
	l.log.Info("preempting in favour of a higher-priority peer", "to", target.Name,
		"peer_priority", target.Priority, "priority", prio)
	l.handOff(target.Name, "preempt")
}

// handOff releases first (keeping its connections, with drains on), then transfers. If every attempt fails
// the node still leads, so it takes the VIP back (through a fresh barrier; that ends a drain) and stops
// trying for a cool-down period.
func (l *loop) handOff(to, why string) {
	l.releaseForHandover(why)
	if l.transfer(to, why) {
		return
	}
	if l.ctx.Err() != nil {
		return
	}
	l.startCooldown()
	l.log.Warn("hand-off failed; keeping leadership and re-acquiring", "to", to, "why", why)
	if l.leader {
		l.tryLead()
	}
}

// handOn passes on leadership that reaches a node after Handover ran — a successor's own hand-over chose it,
// or an election did. Such a node never takes the VIP again and its agent is waiting for its drain (up to
// DrainTimeout) before it leaves, so while it kept leadership nobody held the VIP. It transfers to the best
// successor, or lets Raft pick, and tries again while it still leads.
func (l *loop) handOn() {
	peers := l.m.lead.Peers()
	target, ok := Successor(peers)
	if !ok {
		target, _ = anyTarget(peers) // "" lets Raft pick
	}
	l.log.Info("leadership reached a leaving node: handing it on", "to", target.Name)
	if !l.transfer(target.Name, "leaving") {
		l.after(&l.retry, l.cfg.VerifyInterval)
	}
}

// startCooldown suspends health and preemption hand-offs after one failed.
func (l *loop) startCooldown() {
	l.noHandoffTill = time.Now().Add(cooldownRefresh * l.cfg.GARPRefresh)
}

// transfer hands leadership to toNode with bounded retries. On success the node expects to lose
// leadership; it re-checks with a barrier later in case the loss was never observed.
func (l *loop) transfer(toNode, why string) bool {
	for attempt := 1; attempt <= transferAttempts; attempt++ {
		tctx, cancel := context.WithTimeout(l.ctx, l.cfg.BarrierTimeout)
		err := l.m.lead.TransferLeadership(tctx, toNode)
		cancel()
		if err == nil {
			l.log.Info("leadership transferred", "to", toNode, "why", why)
			l.after(&l.retry, l.cfg.GARPRefresh)
			return true
		}
		if l.ctx.Err() != nil {
			return false
		}
		l.log.Warn("leadership transfer failed", "to", toNode, "why", why, "attempt", attempt, "err", err)
		if attempt < transferAttempts {
			t := time.NewTimer(time.Duration(attempt) * transferBackoff)
			select {
			case <-t.C:
			case <-l.ctx.Done():
				t.Stop()
				return false
			}
		}
	}
	return false
}
