//go:build linux

package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

var allNodes = netip.MustParseAddr("ff02::1")

// announceNDP sends an unsolicited neighbour advertisement (Override set, Solicited clear) for ip to
// all nodes, carrying our MAC as target link-layer address.
func (k *LinuxKernel) announceNDP(ip netip.Addr) error {
	c, _, err := ndp.Listen(k.ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("open NDP socket on %s: %w", k.ifi.Name, err)
	}
	defer c.Close()
	if err := c.WriteTo(k.advert(ip, false), nil, allNodes); err != nil {
		return fmt.Errorf("send unsolicited NA for %s on %s: %w", ip, k.ifi.Name, err)
	}
	return nil
}

func (k *LinuxKernel) advert(ip netip.Addr, solicited bool) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited:     solicited,
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: k.mac}},
	}
}

type ndpResponder struct {
	k      *LinuxKernel
	c      *ndp.Conn
	ips    map[netip.Addr]bool
	allow  func() bool
	closed atomic.Bool
}

// newNDPResponder listens for neighbour solicitations, joining each VIP's solicited-node multicast
// group (the kernel does not, since the VIP is not on this interface).
func (k *LinuxKernel) newNDPResponder(ips []netip.Addr, allow func() bool) (*ndpResponder, error) {
	c, _, err := ndp.Listen(k.ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", k.ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filter NDP socket on %s: %w", k.ifi.Name, err)
	}
	set := make(map[netip.Addr]bool, len(ips))
	for _, ip := range ips {
		set[ip] = true
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err == nil {
			err = c.JoinGroup(group)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("join solicited-node group of %s on %s: %w", ip, k.ifi.Name, err)
		}
	}
	return &ndpResponder{k: k, c: c, ips: set, allow: allow}, nil
}

func (r *ndpResponder) close() {
	r.closed.Store(true)
	r.c.Close()
}

// serve answers solicitations for our VIPs with a solicited, overriding advertisement (to all nodes
// when the solicitation comes from the unspecified address, i.e. duplicate address detection).
func (r *ndpResponder) serve() error {
	errs := 0
	for {
		m, _, src, err := r.c.ReadFrom()
		if err != nil {
			if r.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errs++; errs > maxReadErrors {
				return fmt.Errorf("read NDP on %s: %w", r.k.ifi.Name, err)
			}
			continue
		}
		errs = 0
		ns, ok := m.(*ndp.NeighborSolicitation)
		if !ok || !r.ips[ns.TargetAddress] {
			continue
		}
		if !r.allow() {
			continue // no recent proof of leadership: stay silent
		}
		dst, solicited := src, true
		if src.IsUnspecified() {
			dst, solicited = allNodes, false
		}
		if err := r.c.WriteTo(r.k.advert(ns.TargetAddress, solicited), nil, dst); err != nil {
			r.k.log.Warn("send neighbour advertisement", "vip", ns.TargetAddress, "to", src, "err", err)
		}
	}
}
