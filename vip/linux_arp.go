//go:build linux

package vip

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/arp"
)

// maxReadErrors bounds consecutive read errors (malformed frames) before a responder gives up.
const maxReadErrors = 100

var ethernetBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// announceARP sends a gratuitous ARP in both forms, as `arping -U` and `arping -A` do: a request
// with sender = target = VIP and target MAC broadcast, and a reply with the target MAC equal to our
// own (Linux only treats a reply as gratuitous — overriding a recently confirmed entry — when
// THA = SHA). Both go to the Ethernet broadcast address.
func (k *LinuxKernel) announceARP(ip netip.Addr) error {
	c, err := arp.Dial(k.ifi)
	if err != nil {
		return fmt.Errorf("open ARP socket on %s: %w", k.ifi.Name, err)
	}
	defer c.Close()
	req, err := arp.NewPacket(arp.OperationRequest, k.mac, ip, ethernetBroadcast, ip)
	if err != nil {
		return fmt.Errorf("build gratuitous ARP request for %s: %w", ip, err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, k.mac, ip, k.mac, ip)
	if err != nil {
		return fmt.Errorf("build gratuitous ARP reply for %s: %w", ip, err)
	}
	for _, p := range []*arp.Packet{req, rep} {
		if err := c.WriteTo(p, ethernetBroadcast); err != nil {
			return fmt.Errorf("send gratuitous ARP for %s on %s: %w", ip, k.ifi.Name, err)
		}
	}
	return nil
}

type arpResponder struct {
	k      *LinuxKernel
	c      *arp.Client
	ips    map[netip.Addr]bool
	allow  func() bool
	closed atomic.Bool
}

func (k *LinuxKernel) newARPResponder(ips []netip.Addr, allow func() bool) (*arpResponder, error) {
	c, err := arp.Dial(k.ifi)
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", k.ifi.Name, err)
	}
	set := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		set[ip] = true
	}
	return &arpResponder{k: k, c: c, ips: set, allow: allow}, nil
}

func (r *arpResponder) close() {
	r.closed.Store(true)
	r.c.Close()
}

// serve answers "who has VIP" with our MAC. It ignores our own frames and gratuitous ARPs (sender =
// target), logging the latter when another MAC announces our VIP: that is a second holder.
func (r *arpResponder) serve() error {
	errs := 0
	for {
		p, _, err := r.c.Read()
		if err != nil {
			if r.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errs++; errs > maxReadErrors {
				return fmt.Errorf("read ARP on %s: %w", r.k.ifi.Name, err)
			}
			continue
		}
		errs = 0
		if p.Operation != arp.OperationRequest || !r.ips[p.TargetIP] || bytes.Equal(p.SenderHardwareAddr, r.k.mac) {
			continue
		}
		if p.SenderIP == p.TargetIP {
			r.k.log.Warn("another host announces our VIP", "vip", p.TargetIP, "mac", p.SenderHardwareAddr)
			continue
		}
		if !r.allow() {
			continue // no recent proof of leadership (e.g. just resumed from a pause): stay silent
		}
		if err := r.c.Reply(p, r.k.mac, p.TargetIP); err != nil {
			r.k.log.Warn("send ARP reply", "vip", p.TargetIP, "to", p.SenderHardwareAddr, "err", err)
		}
	}
}
