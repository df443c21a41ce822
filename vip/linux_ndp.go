//go:build linux

package vip

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

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

// ndpSocket is one open NDP responder socket: an ICMPv6 socket whose kernel filter passes only neighbour
// solicitations, read message by message with its hop limit and judged by DecideNDP. A message can never
// end it; only a socket error can, and the supervisor then opens a new one.
type ndpSocket struct {
	k      *LinuxKernel
	c      *ndp.Conn
	w      advertWriter // c; a fake in unit tests
	mtu    int
	vips   []netip.Addr
	allow  func() bool
	limit  *replyLimiter[netip.Addr] // outlives the socket: one per Answer
	warns  *warnLimiter
	closed atomic.Bool
}

// advertWriter sends one NDP message: *ndp.Conn.
type advertWriter interface {
	WriteTo(m ndp.Message, cm *ipv6.ControlMessage, dst netip.Addr) error
}

// openNDP listens for neighbour solicitations on ifi, with the hop limit of each delivered (RFC 4861
// §7.1.1: only 255 proves the sender is on-link), joining each VIP's solicited-node multicast group (the
// kernel does not, since the VIP is not on this interface).
func (k *LinuxKernel) openNDP(ifi *net.Interface, vips []netip.Addr, allow func() bool,
	limit *replyLimiter[netip.Addr], warns *warnLimiter) (*ndpSocket, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filter NDP socket on %s: %w", ifi.Name, err)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		c.Close()
		return nil, fmt.Errorf("ask for the hop limit on the NDP socket on %s: %w", ifi.Name, err)
	}
	for _, ip := range vips {
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err == nil {
			err = c.JoinGroup(group)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("join solicited-node group of %s on %s: %w", ip, ifi.Name, err)
		}
	}
	return &ndpSocket{k: k, c: c, w: c, mtu: max(ifi.MTU, 1280), vips: vips, allow: allow, limit: limit, warns: warns}, nil
}

func (s *ndpSocket) close() {
	s.closed.Store(true)
	s.c.Close()
}

// serve reads and handles messages until the socket is closed (nil) or fails (the error).
func (s *ndpSocket) serve() error {
	buf := make([]byte, s.mtu)
	for {
		n, cm, src, err := s.c.ReadRaw(buf)
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			return fmt.Errorf("read NDP on %s: %w", s.k.ifi.Name, err)
		}
		hopLimit := -1 // no control message: fail closed
		if cm != nil {
			hopLimit = cm.HopLimit
		}
		s.k.metrics.ndpMessage(s.handle(buf[:n], src, hopLimit, time.Now()))
	}
}

// handle acts on DecideNDP's verdict for one message and returns the final result.
func (s *ndpSocket) handle(msg []byte, src netip.Addr, hopLimit int, now time.Time) Verdict {
	d := DecideNDP(msg, src, hopLimit, s.vips, s.k.mac)
	if d.Verdict != Answer {
		return d.Verdict
	}
	if !s.allow() {
		return DropFenced // no recent proof of leadership: stay silent
	}
	// The advertisement goes to the source address, so that is what a reflection would target; all
	// duplicate address detection (unspecified source, answered to all nodes) shares one key.
	if !s.limit.allow(d.Source.WithZone(""), now) {
		if ok, suppressed := s.warns.allow(warnKey{"ndp rate limit", d.SourceMAC}, now); ok {
			s.k.log.Warn("rate-limiting neighbour advertisements", "vip", d.Target, "requester", d.Source,
				"per_requester_per_s", replyPerRequester, "total_per_s", replyGlobal, "suppressed", suppressed)
		}
		return DropRateLimited
	}
	dst, solicited := d.Source, true
	if d.Source.IsUnspecified() {
		dst, solicited = allNodes, false
	}
	if err := s.w.WriteTo(s.k.advert(d.Target, solicited), nil, dst); err != nil {
		if ok, suppressed := s.warns.allow(warnKey{"ndp send", d.SourceMAC}, now); ok {
			s.k.log.Warn("send neighbour advertisement", "vip", d.Target, "to", d.Source, "err", err,
				"suppressed", suppressed)
		}
		return DropSendFailed
	}
	return Answer
}
