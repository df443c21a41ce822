package vip

import (
	"context"
	"errors"
	"time"
)

// This file keeps the holder's proof of leadership fresh: a VerifyLeader every VerifyInterval, each
// success moving the answer fence forward, a refusal releasing the VIP.

// verifyResult is the outcome of one background VerifyLeader for acquisition number gen: the time since
// which a quorum is known to have heard from this leader, or the error.
type verifyResult struct {
	gen   uint64
	since time.Time
	err   error
}

// startVerify starts one VerifyLeader in the background (at most one at a time), bounded by twice
// VerifyInterval and by Run's lifetime; the result arrives on verifyRes.
func (l *loop) startVerify() {
	if !l.held || l.verifying {
		return
	}
	l.verifying = true
	gen, timeout := l.gen, 2*l.cfg.VerifyInterval
	l.bg.Go(func() {
		ctx, cancel := context.WithTimeout(l.ctx, timeout)
		defer cancel()
		since, err := l.m.lead.VerifyLeader(ctx)
		l.verifyRes <- verifyResult{gen: gen, since: since, err: err}
	})
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
	l.fence.confirm(r.since) // when the quorum heard from us, not when we asked: see Leadership.VerifyLeader
	l.after(&l.verify, l.cfg.VerifyInterval)
}
