//go:build linux

package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vipd/vipd/vip/flowfwd"
)

var (
	_ Forwarder    = (*LinuxKernel)(nil)
	_ FlowResetter = (*LinuxKernel)(nil)
)

// errNoForwarding is returned by the Forwarder methods of a LinuxKernel made without WithFlowForwarding.
var errNoForwarding = errors.New("hand-over forwarding is off (no WithFlowForwarding)")

// WithFlowForwarding gives the kernel side its vip/flowfwd table (vipd's own nftables tables, opened in the
// calling thread's network namespace, a stale one from a crashed run replaced), so it is a working Forwarder.
// Without it the Forwarder methods fail and hand-over drains are off.
func WithFlowForwarding() KernelOption {
	return func(k *LinuxKernel) { k.wantFlows = true }
}

// openFlows opens the flowfwd table, in NewLinuxKernel (the right network namespace).
func (k *LinuxKernel) openFlows() error {
	t, err := flowfwd.New(flowfwd.Config{}, k.log)
	if err != nil {
		return fmt.Errorf("hand-over forwarding (nftables): %w", err)
	}
	k.flows = t
	return nil
}

// Mark installs the rules that remember the flows this node accepted (flowfwd.Table.Mark).
func (k *LinuxKernel) Mark(ips []netip.Addr, ports []uint16) error {
	if k.flows == nil {
		return errNoForwarding
	}
	return k.flows.Mark(ips, ports)
}

// Drain keeps p's address on lo: with arp_ignore=1 only the responder, now stopped, ever answered for it, so
// the node keeps serving the flows it has and attracts no new one. DelAddr ends the drain.
func (k *LinuxKernel) Drain(netip.Prefix) error { return nil }

// Forward sends the packets of flows this node does not know to the peer's address of the same family, on the
// announcing interface (flowfwd.Table.Forward, once per family).
func (k *LinuxKernel) Forward(peers []netip.Addr, ips []netip.Addr, ports []uint16) error {
	if k.flows == nil {
		return errNoForwarding
	}
	var errs []error
	for _, peer := range peers {
		var same []netip.Addr
		for _, ip := range ips {
			if ip.Is4() == peer.Is4() {
				same = append(same, ip)
			}
		}
		if len(same) == 0 {
			continue
		}
		if err := k.flows.Forward(peer, k.ifi.Name, same, ports); err != nil {
			errs = append(errs, fmt.Errorf("forward to %s: %w", peer, err))
		}
	}
	return errors.Join(errs...)
}

// StopForward removes the forwarding rules; the mark rules stay.
func (k *LinuxKernel) StopForward() error {
	if k.flows == nil {
		return errNoForwarding
	}
	return k.flows.StopForward()
}

// SegmentAddrs returns, for each family of ips, this host's first global address on the announcing
// interface: where a successor forwards the flows of a drain.
func (k *LinuxKernel) SegmentAddrs(ips []netip.Addr) ([]netip.Addr, error) {
	addrs, err := k.ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", k.ifi.Name, err)
	}
	var out []netip.Addr
	for _, want4 := range []bool{true, false} {
		if !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return ip.Is4() == want4 }) {
			continue
		}
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := p.Addr().Unmap()
			if ip.Is4() == want4 && ip.IsGlobalUnicast() && !slices.Contains(ips, ip) {
				out = append(out, ip)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s has no address of the VIP's family to forward drained flows to", k.ifi.Name)
	}
	return out, nil
}
