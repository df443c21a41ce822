package vip

import (
	"sync/atomic"
	"time"
)

// fence decides, for every ARP/NDP reply and announcement, whether this process may still speak for the VIP.
//
// Holding the address is not enough: a process that was paused (docker pause, a long stall) resumes with its
// goroutines all runnable at once, and its responder can answer requests queued during the pause before the
// leadership loop has seen that another node leads by now. So each reply needs a recent proof of leadership.
// A Barrier or VerifyLeader that started at t and succeeded shows that a quorum of followers heard from this
// leader at or after t; none of them may start an election before t + heartbeat timeout. Answering only until
// t + window, with window no longer than the heartbeat timeout, can therefore never overlap a new leader.
type fence struct {
	clock      Clock
	window     time.Duration
	validUntil atomic.Int64 // UnixNano; 0 = revoked
}

func newFence(clock Clock, window time.Duration) *fence { return &fence{clock: clock, window: window} }

// confirm records a leadership proof whose round started at start.
func (f *fence) confirm(start time.Time) {
	until := start.Add(f.window).UnixNano()
	for {
		cur := f.validUntil.Load()
		if cur >= until || f.validUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// revoke forbids speaking for the VIP until the next confirmation.
func (f *fence) revoke() { f.validUntil.Store(0) }

// allow reports whether a proof of leadership is recent enough to answer or announce now. Safe for
// concurrent use; the ARP/NDP responders call it for every reply.
func (f *fence) allow() bool { return f.clock.Now().UnixNano() < f.validUntil.Load() }
