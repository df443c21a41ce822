package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
)

// Verdict is what the ARP/NDP responder does with one received frame: answer it, or drop it for a reason.
// DecideARP and DecideNDP return the protocol verdicts; the socket loop adds the last three (fenced,
// rate-limited, send failed) after a frame was judged worth answering. String gives the metric label.
type Verdict uint8

// The verdicts. Each drop reason is one label of vipd_arp_frames_total / vipd_ndp_messages_total.
const (
	// Reply: a request or solicitation for one of our VIPs that we should answer.
	Reply Verdict = iota
	// DropMalformed: too short, not an Ethernet/IPv4 ARP frame (hardware type 1, protocol 0x0800, lengths 6
	// and 4), or an NDP message that fails RFC 4861 §7.1.1 (code, length, options, multicast target).
	DropMalformed
	// DropBadHopLimit: an NDP message whose IPv6 hop limit is not 255, so it may come from off-link.
	DropBadHopLimit
	// DropFromSelf: sent by this host (our MAC as sender), e.g. our own announcements.
	DropFromSelf
	// DropBadSender: a sender that cannot be answered unicast: a multicast, broadcast or zero MAC, or a
	// multicast IPv6 source. Answering would reflect our reply to a whole segment.
	DropBadSender
	// DropConflict: another MAC claims one of our VIPs as its own address (a gratuitous ARP, or any ARP
	// whose sender IP is our VIP): a second holder or a misconfigured host, worth reporting.
	DropConflict
	// DropNotRequest: an ARP reply or another operation, or an ICMPv6 message other than a neighbour
	// solicitation.
	DropNotRequest
	// DropNotOurVIP: the target is not one of our VIPs.
	DropNotOurVIP
	// DropWrongDestination: an ARP request sent to another host's MAC, which a packet socket sees when the
	// interface is promiscuous.
	DropWrongDestination
	// DropFenced: worth answering, but the leadership fence was closed (no recent proof of leadership).
	DropFenced
	// DropRateLimited: worth answering, but the requester or all requesters together exceeded their rate.
	DropRateLimited
	// DropSendFailed: the reply could not be sent.
	DropSendFailed

	numVerdicts // the number of verdicts, for per-verdict arrays
)

var verdictLabels = [numVerdicts]string{
	Reply:                "answered",
	DropMalformed:        "malformed",
	DropBadHopLimit:      "bad_hop_limit",
	DropFromSelf:         "from_self",
	DropBadSender:        "bad_sender",
	DropConflict:         "conflict",
	DropNotRequest:       "not_request",
	DropNotOurVIP:        "not_our_vip",
	DropWrongDestination: "wrong_destination",
	DropFenced:           "fenced",
	DropRateLimited:      "rate_limited",
	DropSendFailed:       "send_failed",
}

// String returns the verdict's metric label ("answered", "malformed", …).
func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictLabels[v]
	}
	return "unknown"
}

// Offsets and constants of an Ethernet frame carrying an Ethernet/IPv4 ARP packet (RFC 826).
const (
	ethHeaderLen = 14
	arpFrameLen  = ethHeaderLen + 28 // 42: an ARP frame without padding
	ethMinLen    = 60                // minimum Ethernet frame without FCS: replies are padded to it

	offEthDst  = 0
	offEthSrc  = 6
	offEthType = 12
	offHType   = 14
	offPType   = 16
	offHLen    = 18
	offPLen    = 19
	offOp      = 20
	offSHA     = 22
	offSPA     = 28
	offTHA     = 32
	offTPA     = 38

	etherTypeARP  = 0x0806
	etherTypeIPv4 = 0x0800
	arpHTEthernet = 1
	arpOpRequest  = 1
	arpOpReply    = 2
)

// ARPDecision is DecideARP's result. The fields other than Verdict are set from Reply on, and for
// DropConflict; they are copies, never slices of the frame, so the frame buffer can be reused.
type ARPDecision struct {
	Verdict Verdict
	// VIP is the address asked for (Reply) or claimed by another MAC (DropConflict).
	VIP netip.Addr
	// SenderMAC and SenderIP are the requester (Reply) or the conflicting announcer (DropConflict).
	SenderMAC [6]byte
	SenderIP  netip.Addr
}

// DecideARP judges one raw Ethernet frame received on the ARP socket: answer it (a well-formed
// Ethernet/IPv4 ARP request from a unicast MAC, broadcast or sent to us, for one of vips) or drop it, with
// the reason. self is our MAC. It is pure, never panics and does not allocate: every frame an attacker
// sends goes through it.
func DecideARP(frame []byte, vips []netip.Addr, self net.HardwareAddr) ARPDecision {
	if len(frame) < arpFrameLen ||
		binary.BigEndian.Uint16(frame[offEthType:]) != etherTypeARP ||
		binary.BigEndian.Uint16(frame[offHType:]) != arpHTEthernet ||
		binary.BigEndian.Uint16(frame[offPType:]) != etherTypeIPv4 ||
		frame[offHLen] != 6 || frame[offPLen] != 4 {
		return ARPDecision{Verdict: DropMalformed}
	}
	sha := frame[offSHA : offSHA+6]
	if bytes.Equal(sha, self) || bytes.Equal(frame[offEthSrc:offEthSrc+6], self) {
		return ARPDecision{Verdict: DropFromSelf}
	}
	d := ARPDecision{
		SenderMAC: [6]byte(sha),
		SenderIP:  netip.AddrFrom4([4]byte(frame[offSPA : offSPA+4])),
	}
	if sha[0]&1 != 0 || d.SenderMAC == ([6]byte{}) {
		return ARPDecision{Verdict: DropBadSender}
	}
	op := binary.BigEndian.Uint16(frame[offOp:])
	if op != arpOpRequest && op != arpOpReply {
		return ARPDecision{Verdict: DropNotRequest}
	}
	// A host using our VIP as its own address (RFC 5227's conflict rule): report it, never answer it.
	if slices.Contains(vips, d.SenderIP) {
		d.Verdict, d.VIP = DropConflict, d.SenderIP
		return d
	}
	if op != arpOpRequest {
		return ARPDecision{Verdict: DropNotRequest}
	}
	tpa := netip.AddrFrom4([4]byte(frame[offTPA : offTPA+4]))
	if !slices.Contains(vips, tpa) {
		return ARPDecision{Verdict: DropNotOurVIP}
	}
	dst := frame[offEthDst : offEthDst+6]
	if !bytes.Equal(dst, ethernetBroadcast) && !bytes.Equal(dst, self) {
		return ARPDecision{Verdict: DropWrongDestination}
	}
	// A probe (sender IP 0.0.0.0, RFC 5227) is answered too: that is how the prober learns the VIP is taken.
	d.Verdict, d.VIP = Reply, tpa
	return d
}

var ethernetBroadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// appendARPReply appends to b the Ethernet frame answering d (a Reply from DecideARP) with our MAC self:
// sent unicast to the requester, "VIP is at self", padded to the Ethernet minimum as a NIC would. self
// must be a 6-byte MAC (NewLinuxKernel checks it).
func appendARPReply(b []byte, d ARPDecision, self net.HardwareAddr) []byte {
	b = append(b, d.SenderMAC[:]...)
	b = append(b, self...)
	b = binary.BigEndian.AppendUint16(b, etherTypeARP)
	b = binary.BigEndian.AppendUint16(b, arpHTEthernet)
	b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, arpOpReply)
	b = append(b, self...)
	vip, requester := d.VIP.As4(), d.SenderIP.As4()
	b = append(b, vip[:]...)
	b = append(b, d.SenderMAC[:]...)
	b = append(b, requester[:]...)
	for len(b) < ethMinLen {
		b = append(b, 0)
	}
	return b
}

// NDP constants (RFC 4861).
const (
	icmpTypeNeighborSolicitation = 135
	nsLen                        = 24 // type, code, checksum, reserved, target
	ndpHopLimit                  = 255
	ndpOptSourceLinkLayer        = 1
)

// NDPDecision is DecideNDP's result. Target, Source and SourceMAC are set from Reply on.
type NDPDecision struct {
	Verdict Verdict
	// Target is the VIP asked for.
	Target netip.Addr
	// Source is the solicitation's IPv6 source, with its zone if it had one: the unspecified address for
	// duplicate address detection, which is answered to all nodes.
	Source netip.Addr
	// SourceMAC is the source link-layer address option, when present (HasSourceMAC).
	SourceMAC    [6]byte
	HasSourceMAC bool
}

// DecideNDP judges one ICMPv6 message received on the NDP socket, with the IPv6 source address and hop
// limit of the packet that carried it: answer it (a valid neighbour solicitation, RFC 4861 §7.1.1, for one
// of vips) or drop it, with the reason. The ICMPv6 checksum is the kernel's job and is not checked here.
// self is our MAC. It is pure, never panics and does not allocate.
func DecideNDP(msg []byte, src netip.Addr, hopLimit int, vips []netip.Addr, self net.HardwareAddr) NDPDecision {
	if hopLimit != ndpHopLimit {
		return NDPDecision{Verdict: DropBadHopLimit}
	}
	if len(msg) < 1 || msg[0] != icmpTypeNeighborSolicitation {
		return NDPDecision{Verdict: DropNotRequest}
	}
	bare := src.WithZone("") // a link-local or unspecified source read from a socket carries a zone
	if len(msg) < nsLen || msg[1] != 0 || !bare.Is6() || bare.Is4In6() {
		return NDPDecision{Verdict: DropMalformed}
	}
	d := NDPDecision{Target: netip.AddrFrom16([16]byte(msg[8:24])), Source: src}
	if d.Target.IsMulticast() {
		return NDPDecision{Verdict: DropMalformed}
	}
	for opts := msg[nsLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return NDPDecision{Verdict: DropMalformed}
		}
		n := int(opts[1]) * 8
		if opts[0] == ndpOptSourceLinkLayer {
			if n != 8 || d.HasSourceMAC { // Ethernet: exactly one 6-byte address
				return NDPDecision{Verdict: DropMalformed}
			}
			d.SourceMAC, d.HasSourceMAC = [6]byte(opts[2:8]), true
		}
		opts = opts[n:]
	}
	if bare.IsUnspecified() && d.HasSourceMAC {
		return NDPDecision{Verdict: DropMalformed} // §7.1.1: DAD carries no source link-layer address
	}
	if d.HasSourceMAC && bytes.Equal(d.SourceMAC[:], self) {
		return NDPDecision{Verdict: DropFromSelf}
	}
	if bare.IsMulticast() || (d.HasSourceMAC && (d.SourceMAC[0]&1 != 0 || d.SourceMAC == [6]byte{})) {
		return NDPDecision{Verdict: DropBadSender}
	}
	if !slices.Contains(vips, d.Target) {
		return NDPDecision{Verdict: DropNotOurVIP}
	}
	d.Verdict = Reply
	return d
}
