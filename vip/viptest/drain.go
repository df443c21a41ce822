package viptest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vipd/vipd/vip"
)

// Hand-over drains in the fakes: FakeKernel is a vip.Forwarder that records what it was asked to do, and
// FakeLeadership records drains and reports the ones a test says are under way.

var (
	_ vip.Forwarder    = (*FakeKernel)(nil)
	_ vip.FlowResetter = (*FakeKernel)(nil)
)

// Mark records that the flow-marking rules are in place.
func (k *FakeKernel) Mark(ips []netip.Addr, ports []uint16) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.marked = true
	k.markPorts = slices.Clone(ports)
	k.log.Add(fmt.Sprintf("kernel:mark %v", ports))
	return nil
}

// Drain keeps p's address for the node's open flows as a non-holder: on a FakeNetwork it leaves the holders
// (another node may take the VIP) and becomes a drainer. DelAddr ends it.
func (k *FakeKernel) Drain(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.addrs[p.Addr()]; !ok {
		return fmt.Errorf("viptest: drain %s: not configured", p.Addr())
	}
	k.draining[p.Addr()] = true
	if k.net != nil {
		k.net.del(k.name, p.Addr())
	}
	k.log.Add("kernel:drain " + p.Addr().String())
	return nil
}

// Forward records the peer this node forwards unknown flows to.
func (k *FakeKernel) Forward(peers []netip.Addr, ips []netip.Addr, ports []uint16) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forwardTo = slices.Clone(peers)
	k.forwardPorts = slices.Clone(ports)
	k.log.Add(fmt.Sprintf("kernel:forward %v", peers))
	return nil
}

// StopForward records that forwarding stopped.
func (k *FakeKernel) StopForward() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.forwardTo = nil
	k.log.Add("kernel:stop-forward")
	return nil
}

// Established reports the count SetEstablished set (0 by default: a drain ends at its first check).
func (k *FakeKernel) Established(ips []netip.Addr, ports []uint16, deadAfter time.Duration) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.established, nil
}

// Reset records "kernel:reset" and sets the open connections to 0.
func (k *FakeKernel) Reset(ips []netip.Addr, ports []uint16) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.established
	k.established = 0
	k.log.Add("kernel:reset")
	return n, nil
}

// SegmentAddrs returns the node's address on the VIP's segment: SetSegmentAddr's, or a documentation
// address made from the node's name.
func (k *FakeKernel) SegmentAddrs(ips []netip.Addr) ([]netip.Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.segment.IsValid() {
		return []netip.Addr{k.segment}, nil
	}
	var sum byte
	for _, c := range k.name {
		sum += byte(c)
	}
	return []netip.Addr{netip.AddrFrom4([4]byte{198, 51, 100, 1 + sum%250})}, nil
}

// SetEstablished sets what Established reports: the node's open connections through the VIP.
func (k *FakeKernel) SetEstablished(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.established = n
}

// SetSegmentAddr sets what SegmentAddrs reports.
func (k *FakeKernel) SetSegmentAddr(a netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.segment = a
}

// ForwardingTo returns the peer addresses this node forwards unknown flows to (nil: none).
func (k *FakeKernel) ForwardingTo() []netip.Addr {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.forwardTo)
}

// Draining reports whether ip is kept for a drain.
func (k *FakeKernel) Draining(ip netip.Addr) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.draining[ip]
}

// Marked reports whether Mark ran.
func (k *FakeKernel) Marked() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.marked
}

// MarkedPorts returns the ports the last Mark was given.
func (k *FakeKernel) MarkedPorts() []uint16 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.markPorts)
}

// ForwardedPorts returns the ports the last Forward was given.
func (k *FakeKernel) ForwardedPorts() []uint16 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.forwardPorts)
}

// StartDrain records a drain of this (leading) node and returns its epoch.
func (f *FakeLeadership) StartDrain(_ context.Context, addrs []netip.Addr) (uint64, error) {
	f.mu.Lock()
	hook := f.onStartDrain
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.leader {
		return 0, ErrNotLeader
	}
	f.drainEpoch++
	f.startedDrains = append(f.startedDrains, vip.Drain{Node: "self", Addrs: slices.Clone(addrs), Epoch: f.drainEpoch})
	f.log.Add("raft:drain")
	return f.drainEpoch, nil
}

// OnStartDrain makes StartDrain call hook first: a test looks at what others can see while the record is
// being committed.
func (f *FakeLeadership) OnStartDrain(hook func()) {
	f.mu.Lock()
	f.onStartDrain = hook
	f.mu.Unlock()
}

// ActiveDrains returns what SetActiveDrains set.
func (f *FakeLeadership) ActiveDrains() []vip.Drain {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.activeDrains)
}

// SetActiveDrains sets the other nodes' drains under way, oldest first.
func (f *FakeLeadership) SetActiveDrains(d []vip.Drain) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.activeDrains = slices.Clone(d)
}

// StartedDrains returns the drains this node recorded.
func (f *FakeLeadership) StartedDrains() []vip.Drain {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.startedDrains)
}
