package viptest

import (
	"sync"

	"github.com/vipd/vipd/internal/notify"
	"github.com/vipd/vipd/vip"
)

var _ vip.HealthSource = (*FakeHealth)(nil)

// FakeHealth is a settable vip.HealthSource. Safe for concurrent use, with any number of subscribers.
type FakeHealth struct {
	mu      sync.Mutex
	status  vip.NodeHealth
	changed notify.Signal
}

// NewFakeHealth returns a healthy source.
func NewFakeHealth() *FakeHealth {
	return &FakeHealth{status: vip.NodeHealth{Healthy: true}}
}

// Set changes the health and signals the subscribers.
func (h *FakeHealth) Set(healthy bool, reason string) {
	h.mu.Lock()
	h.status = vip.NodeHealth{Healthy: healthy, Reason: reason}
	h.mu.Unlock()
	h.changed.Notify()
}

// SetStatus changes the whole health, Score included, and signals the subscribers.
func (h *FakeHealth) SetStatus(s vip.NodeHealth) {
	h.mu.Lock()
	h.status = s
	h.mu.Unlock()
	h.changed.Notify()
}

// Status returns the current health.
func (h *FakeHealth) Status() vip.NodeHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// Subscribe returns a channel signalled after every Set, and a function that ends the subscription.
func (h *FakeHealth) Subscribe() (<-chan struct{}, func()) { return h.changed.Subscribe() }
