package vip

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// loop is the state of Manager.Run. Only the Run goroutine touches it; the goroutines it starts
// (Answer, VerifyLeader) report back through channels. Its steps live in three files: this one follows
// leadership and runs the barrier, hold.go acquires, refreshes and releases the VIP, handoff.go moves
// leadership away, verify.go keeps the proof of leadership fresh.
type loop struct {
	m        *Manager
	cfg      *Config
	log      *slog.Logger
	hooks    *hookRunner
	leaderCh <-chan LeaderState
	ctx      context.Context // cancelled when Run returns
	bg       sync.WaitGroup  // Answer and VerifyLeader goroutines

	leader bool   // latest leadership observation (or belief, after a transfer)
	term   uint64 // the term of that leadership
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

	// Hand-over drains (drain.go): this node's own drain, the peer it forwards unknown flows to, and
	// leaving: Handover ran, the node never takes the VIP again.
	drain     *drainState
	fwd       *Drain
	leaving   bool
	handovers <-chan chan (<-chan struct{})

	retry, refresh, burst, verify, preempt, drainTick *time.Timer
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

// after (re)arms *t to fire once after d.
func (l *loop) after(t **time.Timer, d time.Duration) {
	stopTimer(t)
	*t = time.NewTimer(d)
}

func (l *loop) run(healthCh <-chan struct{}) error {
	defer func() {
		for _, t := range []**time.Timer{&l.retry, &l.refresh, &l.burst, &l.verify, &l.preempt, &l.drainTick} {
			stopTimer(t)
		}
	}()
	l.after(&l.refresh, l.cfg.GARPRefresh)
	for {
		select {
		case <-l.ctx.Done():
			return nil
		case s, ok := <-l.leaderCh:
			l.onLeadership(l.received(s, ok))
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
		case <-timerC(l.drainTick):
			l.drainTick = nil
			l.onDrainTick()
		case reply := <-l.handovers:
			l.onHandover(reply)
		case <-l.m.portsAdded:
			l.onPortsAdded()
		}
	}
}

// received interprets one receive from leaderCh. A closed channel means the cluster stopped: we can no
// longer know that we lead, which counts as not leading.
func (l *loop) received(s LeaderState, ok bool) LeaderState {
	if !ok {
		l.leaderCh = nil
		return LeaderState{}
	}
	return s
}

// pending returns a leadership observation that is already waiting, without blocking. The loop calls it
// before acting on a belief that time may have overtaken: after a barrier, before every announcement.
func (l *loop) pending() (LeaderState, bool) {
	select {
	case s, ok := <-l.leaderCh:
		return l.received(s, ok), true
	default:
		return LeaderState{}, false
	}
}

// isNewTerm reports whether s is leadership in a different term from the one the loop believes in: the
// node lost leadership and won it back in between, whether or not the loss was observed.
func (l *loop) isNewTerm(s LeaderState) bool { return s.Leader && l.leader && s.Term != l.term }

func (l *loop) onLeadership(s LeaderState) {
	switch {
	case !s.Leader:
		if l.leader || l.held {
			l.log.Info("leadership lost")
		}
		l.leader = false
		stopTimer(&l.retry)
		l.release("leadership lost")
		return
	case l.isNewTerm(s):
		// Whatever proved our leadership belongs to the earlier term: release, then a fresh barrier decides.
		l.log.Info("leadership lost and regained", "old_term", l.term, "term", s.Term)
		stopTimer(&l.retry)
		l.release("leadership term changed")
	case l.leader:
		return // duplicate observation; a pending retry or the holding state stands
	default:
		l.log.Info("leadership gained", "term", s.Term)
	}
	l.leader, l.term = true, s.Term
	l.tryLead()
}

// stillLeading applies a leadership change that is already waiting before the caller announces anything,
// and reports whether the caller's holding period goes on. After a stall several events are ready at once
// and select picks among them at random; without this a holder deposed during the stall could send one more
// gratuitous ARP before it saw the news. False also when the change was a new term and the VIP was released
// and re-acquired: that acquisition has started its own burst and refresh.
func (l *loop) stillLeading() bool {
	gen := l.gen
	if s, ok := l.pending(); ok {
		l.onLeadership(s)
	}
	return l.held && l.gen == gen
}

// tryLead runs the leadership steps: barrier, witness hand-off, health gate, acquire. It never runs
// while the VIP is held, so blocking here cannot extend a holding period.
func (l *loop) tryLead() {
	if l.leaving {
		l.handOn()
		return
	}
	barrierStart, ok := l.barrier()
	if !ok {
		return
	}
	l.fence.confirm(barrierStart)

	if l.cfg.Witness {
		target, _ := anyTarget(l.m.lead.Peers()) // "" lets Raft pick when no voter is known
		if !l.transfer(target.Name, "witness") {
			l.after(&l.retry, l.cfg.VerifyInterval)
		}
		return
	}
	if h := l.m.health.Status(); !h.Healthy && time.Now().After(l.noHandoffTill) {
		if target, ok := healthierTarget(l.m.lead.Peers(), h); ok {
			l.log.Warn("leader is unhealthy; handing leadership to a healthier peer",
				"reason", h.Reason, "to", target.Name, "peer_healthy", target.Healthy, "peer_score", target.Score, "score", h.Score)
			if l.transfer(target.Name, "unhealthy") {
				return
			}
			l.startCooldown()
		} else {
			l.log.Warn("leader is unhealthy and no peer is healthier: holding the VIP anyway "+
				"(it recovers the instant a backend returns; no address could not)", "reason", h.Reason)
		}
	}
	l.syncForward(true) // before the first ARP answer: a previous holder's flows must not meet a reset
	l.acquire()
}

// barrier commits a barrier for the term the loop believes it leads, and returns when the round started.
// ok is false if the node must not go on: the barrier failed (retried later), leadership was lost while it
// ran, or Run is ending. A barrier that spans a change of term is repeated for the new term.
func (l *loop) barrier() (start time.Time, ok bool) {
	for {
		term := l.term
		bctx, cancel := context.WithTimeout(l.ctx, l.cfg.BarrierTimeout)
		start = time.Now()
		err := l.m.lead.Barrier(bctx)
		cancel()
		if l.ctx.Err() != nil {
			return start, false
		}
		if err != nil {
			l.log.Warn("barrier failed; not acquiring the VIP", "err", err, "retry_in", l.cfg.VerifyInterval)
			l.after(&l.retry, l.cfg.VerifyInterval)
			return start, false
		}
		// The barrier took time: act on the latest leadership, not the one that started it.
		s, seen := l.pending()
		switch {
		case seen && !s.Leader:
			l.onLeadership(s)
			return start, false
		case seen && s.Term != term:
			l.log.Info("leadership lost and regained during the barrier", "old_term", term, "term", s.Term)
			l.term = s.Term
		default:
			return start, true
		}
	}
}
