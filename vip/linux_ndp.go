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

// ndpSocket is one open NDP responder socket: an ICMPv6 socket bound to the interface whose kernel filters
// pass only neighbour solicitations for our VIPs (ndpFilter), read message by message with its hop limit
// and judged by DecideNDP. A message can never end it; only a socket error can, and the supervisor then
// opens a new one.
type ndpSocket struct {
	k      *LinuxKernel
	c      *ipv6.PacketConn
	w      advertSender // ndpSender over c; a fake in unit tests
	mtu    int
	vips   []netip.Addr
	allow  func() bool
	limit  *replyLimiter[netip.Addr] // outlives the socket: one per Answer
	warns  *warnLimiter
	closed atomic.Bool
}

// advertSender sends one neighbour advertisement to dst.
type advertSender interface {
	send(m *ndp.NeighborAdvertisement, dst netip.Addr) error
}

// ndpSender sends advertisements on the responder's socket, from the interface's link-local address
// (the kernel picks one when there is none) with hop limit 255.
type ndpSender struct {
	c   *ipv6.PacketConn
	ifi *net.Interface
	src net.IP
}

func (w ndpSender) send(m *ndp.NeighborAdvertisement, dst netip.Addr) error {
	b, err := ndp.MarshalMessage(m)
	if err != nil {
		return err
	}
	cm := &ipv6.ControlMessage{HopLimit: ndpHopLimit, Src: w.src, IfIndex: w.ifi.Index}
	_, err = w.c.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: w.ifi.Name})
	return err
}

// openNDP listens for neighbour solicitations arriving on ifi, with the hop limit of each delivered (RFC
// 4861 §7.1.1: only 255 proves the sender is on-link). It binds to the unspecified address and the
// device, not to a link-local address, so that it also receives the unicast solicitations neighbours send
// to the VIP itself to confirm reachability, and it joins each VIP's solicited-node multicast group (the
// kernel does not, since the VIP is not on this interface).
func (k *LinuxKernel) openNDP(ifi *net.Interface, vips []netip.Addr, allow func() bool,
	limit *replyLimiter[netip.Addr], warns *warnLimiter) (*ndpSocket, error) {
	filter, err := ndpFilter(vips)
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", ifi.Name, err)
	}
	c := ipv6.NewPacketConn(pc)
	fail := func(what string, err error) (*ndpSocket, error) {
		c.Close()
		return nil, fmt.Errorf("%s on the NDP socket on %s: %w", what, ifi.Name, err)
	}
	rc, err := pc.(*net.IPConn).SyscallConn()
	if err != nil {
		return fail("get the raw socket", err)
	}
	if err := bindToDevice(rc, ifi.Name); err != nil {
		return fail("bind to the interface", err)
	}
	setRcvBuf(rc)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborSolicitation)
	if err := c.SetICMPFilter(&f); err != nil {
		return fail("set the ICMPv6 filter", err)
	}
	if err := c.SetBPF(filter); err != nil {
		return fail("attach the kernel filter", err)
	}
	if err := c.SetControlMessage(ipv6.FlagHopLimit, true); err != nil {
		return fail("ask for the hop limit", err)
	}
	for _, ip := range vips {
		group, err := ndp.SolicitedNodeMulticast(ip)
		if err == nil {
			err = c.JoinGroup(ifi, &net.IPAddr{IP: group.AsSlice(), Zone: ifi.Name})
		}
		if err != nil {
			return fail("join the solicited-node group of "+ip.String(), err)
		}
	}
	return &ndpSocket{k: k, c: c, w: ndpSender{c: c, ifi: ifi, src: linkLocal(ifi)}, mtu: max(ifi.MTU, 1280),
		vips: vips, allow: allow, limit: limit, warns: warns}, nil
}

// linkLocal returns ifi's first IPv6 link-local address, or nil.
func linkLocal(ifi *net.Interface) net.IP {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() == nil && n.IP.IsLinkLocalUnicast() {
			return n.IP
		}
	}
	return nil
}

func (s *ndpSocket) close() {
	s.closed.Store(true)
	s.c.Close()
}

// serve reads and handles messages until the socket is closed (nil) or fails (the error).
func (s *ndpSocket) serve() error {
	buf := make([]byte, s.mtu)
	for {
		n, cm, from, err := s.c.ReadFrom(buf)
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			return fmt.Errorf("read NDP on %s: %w", s.k.ifi.Name, err)
		}
		var src netip.Addr
		if a, ok := from.(*net.IPAddr); ok {
			src, _ = netip.AddrFromSlice(a.IP)
			src = src.WithZone(a.Zone)
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
	if d.Verdict != Reply {
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
	if d.Source.WithZone("").IsUnspecified() {
		dst, solicited = allNodes, false
	}
	if err := s.w.send(s.k.advert(d.Target, solicited), dst); err != nil {
		if ok, suppressed := s.warns.allow(warnKey{"ndp send", [6]byte{}}, now); ok {
			s.k.log.Warn("send neighbour advertisement", "vip", d.Target, "to", d.Source, "err", err,
				"suppressed", suppressed)
		}
		return DropSendFailed
	}
	return Reply
}
