package vip

import (
	"context"
	"net/netip"
	"time"
)

// This file holds the VIP: acquire, the announcement burst, the periodic level check, the responder, and
// release. Every step runs on the Run goroutine.

func (l *loop) ips() []netip.Addr {
	ips := make([]netip.Addr, len(l.cfg.VIPs))
	for i, p := range l.cfg.VIPs {
		ips[i] = p.Addr()
	}
	return ips
}

// acquire adds every VIP, starts answering and announcing. Address errors are logged and repaired by
// the level check at the next refresh.
func (l *loop) acquire() {
	for _, p := range l.cfg.VIPs {
		if err := l.m.kernel.AddAddr(p); err != nil {
			l.log.Error("add VIP", "vip", p, "err", err)
		}
	}
	l.endDrain("VIP held again", false) // the drained flows are this holder's own again
	l.startAnswer()
	l.held = true
	l.m.setHeld(true)
	l.gen++
	l.warnedKeep = false
	l.acquiredAt = time.Now()
	l.cfg.Metrics.acquired(l.acquiredAt)
	l.log.Info("VIP acquired", "vips", joinPrefixes(l.cfg.VIPs))

	l.announce()
	if l.burstLeft = l.cfg.BurstCount - 1; l.burstLeft > 0 {
		l.after(&l.burst, l.cfg.BurstInterval)
	}
	l.after(&l.refresh, l.cfg.GARPRefresh)
	l.after(&l.verify, l.cfg.VerifyInterval)
	l.after(&l.preempt, l.cfg.PreemptDelay)
	l.hooks.enqueue("acquire", l.m.hooks.Load().acquire)
}

// release stops answering and removes every VIP before anything else happens; then the hook.
func (l *loop) release(why string) { l.releaseAddrs(why, false) }

// releaseKeeping stops answering like release but keeps the addresses, drained (Forwarder.Drain), to serve
// the flows this node has: for a planned hand-over.
func (l *loop) releaseKeeping(why string) { l.releaseAddrs(why, true) }

func (l *loop) releaseAddrs(why string, keep bool) {
	if !l.held {
		return
	}
	l.held = false
	l.m.setHeld(false)
	l.fence.revoke() // silences the responder at once, even before it has stopped
	l.stopAnswer()
	for _, p := range l.cfg.VIPs {
		var err error
		if keep {
			err = l.forwarder().Drain(p)
		} else {
			err = l.m.kernel.DelAddr(p)
		}
		if err != nil {
			l.log.Error("remove VIP", "vip", p, "keep_for_drain", keep, "err", err)
		}
	}
	l.cfg.Metrics.released(time.Now())
	l.log.Info("VIP released", "why", why)
	for _, t := range []**time.Timer{&l.burst, &l.verify, &l.preempt} {
		stopTimer(t)
	}
	l.hooks.enqueue("release", l.m.hooks.Load().release)
}

func (l *loop) startAnswer() {
	if l.answerDone != nil {
		return
	}
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan error, 1)
	l.answerCancel, l.answerDone = cancel, done
	ips := l.ips()
	l.bg.Go(func() { done <- l.m.kernel.Answer(ctx, ips, l.fence.allow) })
}

// stopAnswer ends the responder and waits for it, so that no reply leaves after release.
func (l *loop) stopAnswer() {
	if l.answerDone == nil {
		return
	}
	l.answerCancel()
	if err := <-l.answerDone; err != nil {
		l.log.Warn("ARP/NDP responder ended with error", "err", err)
	}
	l.answerCancel, l.answerDone = nil, nil
}

func (l *loop) onAnswerEnded(err error) {
	l.answerCancel()
	l.answerCancel, l.answerDone = nil, nil
	if l.held {
		l.log.Error("ARP/NDP responder stopped; restarting at the next announcement", "err", err)
	}
}

func (l *loop) announce() {
	if !l.cfg.Announce {
		return
	}
	if !l.fence.allow() {
		l.log.Debug("not announcing: no recent proof of leadership (verification pending)")
		return
	}
	for _, ip := range l.ips() {
		if err := l.m.kernel.Announce(ip); err != nil {
			l.log.Warn("announce VIP", "vip", ip, "err", err)
			continue
		}
		l.cfg.Metrics.garp()
	}
}

func (l *loop) onBurst() {
	if !l.stillLeading() {
		return
	}
	l.startAnswer()
	l.announce()
	if l.burstLeft--; l.burstLeft > 0 {
		l.after(&l.burst, l.cfg.BurstInterval)
	}
}

// onRefresh is the level check: the VIP is present (and announced) exactly while held.
func (l *loop) onRefresh() {
	if !l.stillLeading() {
		if !l.held {
			l.removeStray()
		}
		return
	}
	for _, p := range l.cfg.VIPs {
		has, err := l.m.kernel.HasAddr(p)
		if err != nil {
			l.log.Warn("check VIP", "vip", p, "err", err)
			continue
		}
		if !has {
			l.log.Warn("VIP missing while held (removed externally?); re-adding", "vip", p)
			if err := l.m.kernel.AddAddr(p); err != nil {
				l.log.Error("re-add VIP", "vip", p, "err", err)
			}
		}
	}
	l.startAnswer()
	l.announce()
	l.onHealth()
	if l.held && l.preempt == nil {
		l.checkPreempt()
	}
}

// removeStray is the level check of a non-holder: a VIP configured here (by an operator, a crashed run)
// must go.
func (l *loop) removeStray() {
	if l.cfg.Witness || l.m.kernel == nil || l.drain != nil { // a draining node keeps it on purpose
		return
	}
	for _, p := range l.cfg.VIPs {
		if has, err := l.m.kernel.HasAddr(p); err == nil && has {
			l.log.Warn("VIP present on a non-holder; removing it", "vip", p)
			if err := l.m.kernel.DelAddr(p); err != nil {
				l.log.Error("remove stray VIP", "vip", p, "err", err)
			}
		}
	}
}

// cleanup removes VIPs left behind by a crashed earlier run. Nothing is held yet, so this never
// removes an address this process owns; if this node is leader it re-adds them after its barrier.
func (l *loop) cleanup() {
	if l.m.kernel == nil {
		return
	}
	if c, ok := l.m.kernel.(Cleaner); ok {
		if err := c.Cleanup(); err != nil {
			l.log.Error("remove stale VIPs", "err", err)
		}
	}
	for _, p := range l.cfg.VIPs {
		if err := l.m.kernel.DelAddr(p); err != nil {
			l.log.Error("remove stale VIP", "vip", p, "err", err)
		}
	}
}
