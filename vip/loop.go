package vip

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// verifyResult is the outcome of one background VerifyLeader for acquisition number gen.
type verifyResult struct {
	gen   uint64
	start time.Time
	err   error
}

// loop is the state of Manager.Run. Only the Run goroutine touches it; the goroutines it starts
// (Answer, VerifyLeader) report back through channels.
type loop struct {
	m        *Manager
	cfg      *Config
	log      *slog.Logger
	hooks    *hookRunner
	leaderCh <-chan bool
	ctx      context.Context // cancelled when Run returns
	bg       sync.WaitGroup  // Answer and VerifyLeader goroutines

	leader bool // latest leadership observation (or belief, after a transfer)
	held   bool
	gen    uint64 // acquisition counter, to ignore results from an earlier holding period

	acquiredAt    time.Time
	burstLeft     int
	noHandoffTill time.Time // hand-off cool-down after a failed transfer
	warnedKeep    bool      // logged "keeping the VIP while unhealthy" for this holding period

	answerCancel context.CancelFunc
	answerDone   chan error

	verifying bool
	verifyRes chan verifyResult
	fence     *fence // gates every reply and announcement on a recent proof of leadership

	retry, refresh, burst, verify, preempt Timer
}

func timerC(t Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C()
}

func stopTimer(t *Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

func (l *loop) after(t *Timer, d time.Duration) {
	stopTimer(t)
	*t = l.cfg.Clock.NewTimer(d)
}

func (l *loop) run(healthCh <-chan struct{}) error {
	defer func() {
		for _, t := range []*Timer{&l.retry, &l.refresh, &l.burst, &l.verify, &l.preempt} {
			stopTimer(t)
		}
	}()
	l.after(&l.refresh, l.cfg.GARPRefresh)
	for {
		select {
		case <-l.ctx.Done():
			return nil
		case v, ok := <-l.leaderCh:
			if !ok { // the cluster stopped: we can no longer know that we lead
				l.leaderCh = nil
			}
			l.onLeadership(v && ok)
		case <-healthCh:
			l.onHealth()
		case <-timerC(l.retry):
			l.retry = nil
			if l.leader && !l.held {
				l.tryLead()
			}
		case <-timerC(l.refresh):
			l.after(&l.refresh, l.cfg.GARPRefresh)
			l.onRefresh()
		case <-timerC(l.burst):
			l.burst = nil
			l.onBurst()
		case <-timerC(l.verify):
			l.verify = nil
			l.startVerify()
		case r := <-l.verifyRes:
			l.onVerify(r)
		case err := <-l.answerDone:
			l.onAnswerEnded(err)
		case <-timerC(l.preempt):
			l.preempt = nil
			l.checkPreempt()
		}
	}
}

func (l *loop) onLeadership(v bool) {
	if !v {
		if l.leader || l.held {
			l.log.Info("leadership lost")
		}
		l.leader = false
		stopTimer(&l.retry)
		l.release("leadership lost")
		return
	}
	if l.leader {
		return // duplicate observation; a pending retry or the holding state stands
	}
	l.leader = true
	l.log.Info("leadership gained")
	l.tryLead()
}

// tryLead runs the leadership steps: barrier, witness hand-off, health gate, acquire. It never runs
// while the VIP is held, so blocking here cannot extend a holding period.
func (l *loop) tryLead() {
	bctx, cancel := context.WithTimeout(l.ctx, l.cfg.BarrierTimeout)
	barrierStart := l.cfg.Clock.Now()
	err := l.m.lead.Barrier(bctx)
	cancel()
	if l.ctx.Err() != nil {
		return
	}
	if err != nil {
		l.log.Warn("barrier failed; not acquiring the VIP", "err", err, "retry_in", l.cfg.VerifyInterval)
		l.after(&l.retry, l.cfg.VerifyInterval)
		return
	}
	// The barrier took time: act on the latest leadership value, not the one that started it.
	select {
	case v, ok := <-l.leaderCh:
		if !ok {
			l.leaderCh = nil
		}
		if !v || !ok {
			l.onLeadership(false)
			return
		}
	default:
	}

	l.fence.confirm(barrierStart)

	if l.cfg.Witness {
		target, _ := chooseTarget(l.m.lead.Peers(), nil) // "" (any voter) if none is known healthy
		if !l.transfer(target.Name, "witness") {
			l.after(&l.retry, l.cfg.VerifyInterval)
		}
		return
	}
	if h := l.m.health.Status(); !h.Healthy && l.cfg.Clock.Now().After(l.noHandoffTill) {
		if target, ok := chooseTarget(l.m.lead.Peers(), nil); ok {
			l.log.Warn("leader is unhealthy; handing leadership to a healthy peer",
				"reason", h.Reason, "to", target.Name)
			if l.transfer(target.Name, "unhealthy") {
				return
			}
			l.noHandoffTill = l.cfg.Clock.Now().Add(cooldownRefresh * l.cfg.GARPRefresh)
		} else {
			l.log.Warn("leader is unhealthy and no peer is healthy: holding the VIP anyway "+
				"(it recovers the instant a backend returns; no address could not)", "reason", h.Reason)
		}
	}
	l.acquire()
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
			t := l.cfg.Clock.NewTimer(time.Duration(attempt) * 50 * time.Millisecond)
			select {
			case <-t.C():
			case <-l.ctx.Done():
				t.Stop()
				return false
			}
		}
	}
	return false
}

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
	l.startAnswer()
	l.held = true
	l.m.held.Store(true)
	l.gen++
	l.warnedKeep = false
	l.acquiredAt = l.cfg.Clock.Now()
	l.cfg.Metrics.acquired(l.acquiredAt)
	l.log.Info("VIP acquired", "vips", joinPrefixes(l.cfg.VIPs))

	l.announce()
	if l.burstLeft = l.cfg.BurstCount - 1; l.burstLeft > 0 {
		l.after(&l.burst, l.cfg.BurstInterval)
	}
	l.after(&l.refresh, l.cfg.GARPRefresh)
	l.after(&l.verify, l.cfg.VerifyInterval)
	l.after(&l.preempt, l.cfg.PreemptDelay)
	l.hooks.enqueue("acquire", l.cfg.OnAcquire)
}

// release stops answering and removes every VIP before anything else happens; then the hook.
func (l *loop) release(why string) {
	if !l.held {
		return
	}
	l.held = false
	l.m.held.Store(false)
	l.fence.revoke() // silences the responder at once, even before it has stopped
	l.stopAnswer()
	for _, p := range l.cfg.VIPs {
		if err := l.m.kernel.DelAddr(p); err != nil {
			l.log.Error("remove VIP", "vip", p, "err", err)
		}
	}
	l.cfg.Metrics.released(l.cfg.Clock.Now())
	l.log.Info("VIP released", "why", why)
	for _, t := range []*Timer{&l.burst, &l.verify, &l.preempt} {
		stopTimer(t)
	}
	l.hooks.enqueue("release", l.cfg.OnRelease)
}

func (l *loop) startAnswer() {
	if l.answerDone != nil {
		return
	}
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan error, 1)
	l.answerCancel, l.answerDone = cancel, done
	ips := l.ips()
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		done <- l.m.kernel.Answer(ctx, ips, l.fence.allow)
	}()
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

// stillLeading applies a leadership change that is already waiting before the caller announces anything.
// After a stall several events are ready at once and select picks among them at random; without this a
// holder deposed during the stall could send one more gratuitous ARP before it saw the news.
func (l *loop) stillLeading() bool {
	select {
	case v, ok := <-l.leaderCh:
		if !ok {
			l.leaderCh = nil
		}
		l.onLeadership(v && ok)
	default:
	}
	return l.held
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
		if l.cfg.Witness || l.m.kernel == nil {
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

// onHealth hands leadership off when the holder turns unhealthy and a healthy peer exists.
func (l *loop) onHealth() {
	if !l.held || l.m.health == nil {
		return
	}
	h := l.m.health.Status()
	if h.Healthy {
		l.warnedKeep = false
		return
	}
	target, ok := chooseTarget(l.m.lead.Peers(), nil)
	if !ok {
		if !l.warnedKeep {
			l.warnedKeep = true
			l.log.Warn("holder is unhealthy and no peer is healthy: keeping the VIP", "reason", h.Reason)
		}
		return
	}
	if l.cfg.Clock.Now().Before(l.noHandoffTill) {
		return
	}
	l.log.Warn("holder turned unhealthy; releasing the VIP and handing off", "reason", h.Reason, "to", target.Name)
	l.handOff(target.Name, "unhealthy")
}

// checkPreempt hands off to a healthy peer of higher priority once the VIP has been held stably for
// PreemptDelay. While no such peer exists it is re-checked at every refresh.
func (l *loop) checkPreempt() {
	if !l.held || l.cfg.Clock.Now().Before(l.noHandoffTill) {
		return
	}
	prio := l.cfg.Priority
	target, ok := chooseTarget(l.m.lead.Peers(), &prio)
	if !ok {
		return
	}
	l.log.Info("preempting in favour of a higher-priority peer", "to", target.Name,
		"peer_priority", target.Priority, "priority", prio)
	l.handOff(target.Name, "preempt")
}

// handOff releases first, then transfers. If every attempt fails the node still leads, so it takes
// the VIP back (through a fresh barrier) and stops trying for a cool-down period.
func (l *loop) handOff(to, why string) {
	l.release(why)
	if l.transfer(to, why) {
		return
	}
	if l.ctx.Err() != nil {
		return
	}
	l.noHandoffTill = l.cfg.Clock.Now().Add(cooldownRefresh * l.cfg.GARPRefresh)
	l.log.Warn("hand-off failed; keeping leadership and re-acquiring", "to", to, "why", why)
	if l.leader {
		l.tryLead()
	}
}

func (l *loop) startVerify() {
	if !l.held || l.verifying {
		return
	}
	l.verifying = true
	gen, timeout := l.gen, 2*l.cfg.VerifyInterval
	start := l.cfg.Clock.Now()
	l.bg.Add(1)
	go func() {
		defer l.bg.Done()
		ctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		l.verifyRes <- verifyResult{gen: gen, start: start, err: l.m.lead.VerifyLeader(ctx)}
	}()
}

func (l *loop) onVerify(r verifyResult) {
	l.verifying = false
	if !l.held {
		return
	}
	if r.gen != l.gen { // from an earlier holding period: verify the current one now
		l.startVerify()
		return
	}
	if r.err != nil {
		if errors.Is(r.err, context.Canceled) && l.ctx.Err() != nil {
			return
		}
		if errors.Is(r.err, context.DeadlineExceeded) {
			// Slow, not refuted: a loaded machine. The fence already keeps us silent once the last proof
			// is older than the window, and Raft's lease steps a cut-off leader down; releasing here
			// would turn every scheduling hiccup into an outage.
			l.log.Debug("leader verification slow; retrying", "err", r.err)
			l.startVerify()
			return
		}
		l.log.Warn("leader verification failed: releasing the VIP", "err", r.err)
		l.release("verify leader failed")
		l.after(&l.retry, l.cfg.VerifyInterval) // still leader? a fresh barrier decides
		return
	}
	l.fence.confirm(r.start)
	l.after(&l.verify, l.cfg.VerifyInterval)
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
