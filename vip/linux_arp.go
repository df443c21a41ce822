//go:build linux

package vip

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"
)

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

// arpSocket is one open ARP responder socket: a raw packet socket whose kernel filter (arpFilter) lets
// through only ARP for our VIPs, read frame by frame and judged by DecideARP. A frame can never end it;
// only a socket error can, and the supervisor then opens a new one.
type arpSocket struct {
	k      *LinuxKernel
	c      *packet.Conn
	w      frameWriter // c; a fake in unit tests
	vips   []netip.Addr
	allow  func() bool
	limit  *replyLimiter[[6]byte] // outlives the socket: one per Answer
	warns  *warnLimiter
	closed atomic.Bool
	out    []byte // reply buffer, reused
}

// frameWriter sends one raw frame to a link-layer address: *packet.Conn.
type frameWriter interface {
	WriteTo(b []byte, addr net.Addr) (int, error)
}

// openARP opens the ARP socket on ifi (the supervisor re-resolves it by name on a restart). The filter
// is attached before the socket is bound, so not even one unfiltered frame is queued.
func (k *LinuxKernel) openARP(ifi *net.Interface, vips []netip.Addr, allow func() bool,
	limit *replyLimiter[[6]byte], warns *warnLimiter) (*arpSocket, error) {
	cfg := &packet.Config{}
	if !k.noFilter {
		f, err := arpFilter(vips, true)
		if err != nil {
			return nil, err
		}
		cfg.Filter = f
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, cfg)
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", ifi.Name, err)
	}
	if rc, err := c.SyscallConn(); err == nil {
		setRcvBuf(rc)
	}
	return &arpSocket{k: k, c: c, w: c, vips: vips, allow: allow, limit: limit, warns: warns,
		out: make([]byte, 0, ethMinLen)}, nil
}

func (s *arpSocket) close() {
	s.closed.Store(true)
	s.c.Close()
}

// serve reads and handles frames until the socket is closed (nil) or fails (the error).
func (s *arpSocket) serve() error {
	buf := make([]byte, arpSnapLen)
	for {
		n, _, err := s.c.ReadFrom(buf)
		if err != nil {
			if s.closed.Load() {
				return nil
			}
			return fmt.Errorf("read ARP on %s: %w", s.k.ifi.Name, err)
		}
		s.k.metrics.arpFrame(s.handle(buf[:n], time.Now()))
	}
}

// handle acts on DecideARP's verdict for one frame and returns the final result.
func (s *arpSocket) handle(frame []byte, now time.Time) Verdict {
	d := DecideARP(frame, s.vips, s.k.mac)
	switch d.Verdict {
	case Reply:
		return s.answer(d, now)
	case DropConflict:
		if ok, suppressed := s.warns.allow(warnKey{"arp conflict", d.SenderMAC}, now); ok {
			s.k.log.Warn("another host claims our VIP in ARP: a second holder or an address conflict",
				"vip", d.VIP, "mac", macString(d.SenderMAC), "suppressed", suppressed)
		}
	}
	return d.Verdict
}

// answer replies to an ARP request for a VIP, when the leadership fence and the rate limits allow it.
func (s *arpSocket) answer(d ARPDecision, now time.Time) Verdict {
	if !s.allow() {
		return DropFenced // no recent proof of leadership (e.g. just resumed from a pause): stay silent
	}
	if !s.limit.allow(d.SenderMAC, now) {
		if ok, suppressed := s.warns.allow(warnKey{"arp rate limit", d.SenderMAC}, now); ok {
			s.k.log.Warn("rate-limiting ARP replies", "vip", d.VIP, "requester", macString(d.SenderMAC),
				"per_requester_per_s", replyPerRequester, "total_per_s", replyGlobal, "suppressed", suppressed)
		}
		return DropRateLimited
	}
	s.out = appendARPReply(s.out[:0], d, s.k.mac)
	if _, err := s.w.WriteTo(s.out, &packet.Addr{HardwareAddr: d.SenderMAC[:]}); err != nil {
		if ok, suppressed := s.warns.allow(warnKey{"arp send", [6]byte{}}, now); ok {
			s.k.log.Warn("send ARP reply", "vip", d.VIP, "to", macString(d.SenderMAC), "err", err,
				"suppressed", suppressed)
		}
		return DropSendFailed
	}
	return Reply
}
