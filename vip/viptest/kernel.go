package viptest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/vipd/vipd/vip"
)

var _ vip.Kernel = (*FakeKernel)(nil)

// FakeKernel is an in-memory vip.Kernel: it records which VIPs are "on", counts announcements and
// tracks the responder. Standalone (NewFakeKernel) or bound to a FakeNetwork (FakeNetwork.Kernel).
// Safe for concurrent use.
type FakeKernel struct {
	name string
	net  *FakeNetwork // nil when standalone

	mu        sync.Mutex
	addrs     map[netip.Addr]netip.Prefix
	announces map[netip.Addr]int
	answering int
	addErr    error
	answerErr error
	allow     func() bool
	log       *EventLog

	// Forwarder state (drain.go).
	marked       bool
	markPorts    []uint16 // the last Mark's
	forwardPorts []uint16 // the last Forward's
	draining     map[netip.Addr]bool
	forwardTo    []netip.Addr
	established  int
	segment      netip.Addr
}

// NewFakeKernel returns a standalone FakeKernel (no shared network).
func NewFakeKernel() *FakeKernel { return newFakeKernel("local", nil) }

func newFakeKernel(name string, n *FakeNetwork) *FakeKernel {
	return &FakeKernel{name: name, net: n, addrs: make(map[netip.Addr]netip.Prefix),
		announces: make(map[netip.Addr]int), draining: make(map[netip.Addr]bool)}
}

// SetEventLog makes the kernel record "kernel:add IP", "kernel:del IP", "kernel:answer-start",
// "kernel:answer-stop" and "kernel:announce IP" in log.
func (k *FakeKernel) SetEventLog(log *EventLog) {
	k.mu.Lock()
	k.log = log
	k.mu.Unlock()
}

// SetAddError makes later AddAddr calls fail with err (nil restores success).
func (k *FakeKernel) SetAddError(err error) {
	k.mu.Lock()
	k.addErr = err
	k.mu.Unlock()
}

// SetAnswerError makes later Answer calls return err at once, as if the raw socket could not open.
func (k *FakeKernel) SetAnswerError(err error) {
	k.mu.Lock()
	k.answerErr = err
	k.mu.Unlock()
}

// AddAddr marks p's address as configured; idempotent.
func (k *FakeKernel) AddAddr(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.addErr != nil {
		return fmt.Errorf("add VIP %s: %w", p, k.addErr)
	}
	if _, ok := k.addrs[p.Addr()]; (!ok || k.draining[p.Addr()]) && k.net != nil {
		k.net.add(k.name, p.Addr()) // a drained address held again is a holder's again
	}
	k.addrs[p.Addr()] = p
	delete(k.draining, p.Addr())
	k.log.Add("kernel:add " + p.Addr().String())
	return nil
}

// DelAddr marks p's address as removed; idempotent.
func (k *FakeKernel) DelAddr(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.addrs[p.Addr()]; ok && k.net != nil && !k.draining[p.Addr()] {
		k.net.del(k.name, p.Addr())
	}
	delete(k.addrs, p.Addr())
	delete(k.draining, p.Addr())
	k.log.Add("kernel:del " + p.Addr().String())
	return nil
}

// HasAddr reports whether p's address is configured.
func (k *FakeKernel) HasAddr(p netip.Prefix) (bool, error) {
	return k.Has(p.Addr()), nil
}

// Announce counts one announcement and, on a network, points the clients' caches at this node.
func (k *FakeKernel) Announce(ip netip.Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.announces[ip]++
	if k.net != nil {
		k.net.announce(k.name, ip)
	}
	k.log.Add("kernel:announce " + ip.String())
	return nil
}

// Answer "answers" for ips until ctx is done. The fake network has no requests to gate, so allow is only
// recorded: AllowsNow reports what it says at the moment of the call.
func (k *FakeKernel) Answer(ctx context.Context, ips []netip.Addr, allow func() bool) error {
	k.mu.Lock()
	if err := k.answerErr; err != nil {
		k.mu.Unlock()
		return fmt.Errorf("listen for ARP: %w", err)
	}
	k.answering++
	k.allow = allow
	if k.net != nil {
		k.net.answer(k.name, ips, 1)
	}
	k.log.Add("kernel:answer-start")
	k.mu.Unlock()

	<-ctx.Done()

	k.mu.Lock()
	k.answering--
	k.allow = nil
	if k.net != nil {
		k.net.answer(k.name, ips, -1)
	}
	k.log.Add("kernel:answer-stop")
	k.mu.Unlock()
	return nil
}

// AllowsNow reports whether the running Answer's gate would let a reply out now (false when not answering).
func (k *FakeKernel) AllowsNow() bool {
	k.mu.Lock()
	allow := k.allow
	k.mu.Unlock()
	return allow != nil && allow()
}

// Has reports whether ip is configured.
func (k *FakeKernel) Has(ip netip.Addr) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.addrs[ip]
	return ok
}

// Announces returns how many announcements were sent for ip.
func (k *FakeKernel) Announces(ip netip.Addr) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.announces[ip]
}

// Answering reports whether a responder is running.
func (k *FakeKernel) Answering() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.answering > 0
}

// RemoveExternally deletes ip as an operator's `ip addr del` would, without going through the
// Manager, to exercise the level-triggered re-add.
func (k *FakeKernel) RemoveExternally(ip netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.addrs[ip]; ok && k.net != nil {
		k.net.del(k.name, ip)
	}
	delete(k.addrs, ip)
}

// AddExternally configures p as a crashed earlier run would have left it, bypassing the Manager.
func (k *FakeKernel) AddExternally(p netip.Prefix) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.addrs[p.Addr()]; (!ok || k.draining[p.Addr()]) && k.net != nil {
		k.net.add(k.name, p.Addr()) // a drained address held again is a holder's again
	}
	k.addrs[p.Addr()] = p
	delete(k.draining, p.Addr())
}
