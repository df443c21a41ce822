package vip

import (
	"sync/atomic"
	"time"
)

// fence decides, for every ARP/NDP reply and announcement, whether this process may still speak for the VIP:
// only until AnswerWindow after the start of its latest proof of leadership (see "Safety timing" in the
// package documentation for why that can never overlap a new leader).
//
// Holding the address is not enough: a process that was paused (docker pause, a long stall) resumes with its
// goroutines all runnable at once, and its responder can answer requests queued during the pause before the
// leadership loop has seen that another node leads by now.
//
// Times are kept as offsets on the monotonic clock from the fence's creation, so a step of the wall clock
// (NTP, an operator) can neither extend nor cut short the window.
type fence struct {
	window     time.Duration
	epoch      time.Time    // carries a monotonic reading; every time below is measured from it
	validUntil atomic.Int64 // nanoseconds after epoch; 0 (or less) = no proof
}

func newFence(window time.Duration) *fence { return &fence{window: window, epoch: time.Now()} }

// confirm records a proof that a quorum heard from this leader at or after start (a time.Now reading): a
// barrier's start, or the time VerifyLeader reports.
func (f *fence) confirm(start time.Time) {
	until := int64(start.Sub(f.epoch) + f.window)
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
func (f *fence) allow() bool { return int64(time.Since(f.epoch)) < f.validUntil.Load() }
