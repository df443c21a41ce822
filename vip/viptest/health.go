package viptest

import (
	"errors"
	"sync"

	"github.com/vipd/vipd/vip"
)

// ErrNotLeader is returned by FakeLeadership's Barrier and VerifyLeader on a follower.
var ErrNotLeader = errors.New("viptest: not the leader")

var _ vip.HealthSource = (*FakeHealth)(nil)

// FakeHealth is a settable vip.HealthSource. Safe for concurrent use; one subscriber at a time.
type FakeHealth struct {
	mu     sync.Mutex
	status vip.NodeHealth
	ch     chan struct{}
}

// NewFakeHealth returns a healthy source.
func NewFakeHealth() *FakeHealth {
	return &FakeHealth{status: vip.NodeHealth{Healthy: true}, ch: make(chan struct{}, 1)}
}

// Set changes the health and signals the subscriber.
func (h *FakeHealth) Set(healthy bool, reason string) {
	h.mu.Lock()
	h.status = vip.NodeHealth{Healthy: healthy, Reason: reason}
	h.mu.Unlock()
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

// Status returns the current health.
func (h *FakeHealth) Status() vip.NodeHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// Subscribe returns the change channel; the stop function is a no-op.
func (h *FakeHealth) Subscribe() (<-chan struct{}, func()) { return h.ch, func() {} }
