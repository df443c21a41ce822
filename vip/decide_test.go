package vip

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

var (
	testSelf  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
	testPeer  = [6]byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x99}
	testVIP4  = netip.MustParseAddr("10.0.0.50")
	testVIP4b = netip.MustParseAddr("10.0.0.51")
	testVIPs4 = []netip.Addr{testVIP4, testVIP4b}
	testVIP6  = netip.MustParseAddr("fd00::50")
	testVIPs6 = []netip.Addr{testVIP6}
	testHost4 = netip.MustParseAddr("10.0.0.100")
	testHost6 = netip.MustParseAddr("fd00::100")
)

// arpFields is an ARP frame to build; zero fields take the values of a broadcast request from testPeer
// (10.0.0.100) for testVIP4.
type arpFields struct {
	ethDst, ethSrc *[6]byte
	ethType        uint16
	htype, ptype   uint16
	hlen, plen     byte
	op             uint16
	sha, tha       *[6]byte
	spa, tpa       netip.Addr
}

func (f arpFields) frame() []byte {
	or16 := func(v, d uint16) uint16 {
		if v == 0 {
			return d
		}
		return v
	}
	orMAC := func(m *[6]byte, d [6]byte) []byte {
		if m == nil {
			return d[:]
		}
		return m[:]
	}
	orIP := func(a, d netip.Addr) []byte {
		if !a.IsValid() {
			a = d
		}
		b := a.As4()
		return b[:]
	}
	hlen, plen := f.hlen, f.plen
	if hlen == 0 {
		hlen = 6
	}
	if plen == 0 {
		plen = 4
	}
	b := append([]byte{}, orMAC(f.ethDst, [6]byte(ethernetBroadcast))...)
	b = append(b, orMAC(f.ethSrc, [6]byte(orMAC(f.sha, testPeer)))...)
	b = binary.BigEndian.AppendUint16(b, or16(f.ethType, etherTypeARP))
	b = binary.BigEndian.AppendUint16(b, or16(f.htype, arpHTEthernet))
	b = binary.BigEndian.AppendUint16(b, or16(f.ptype, etherTypeIPv4))
	b = append(b, hlen, plen)
	b = binary.BigEndian.AppendUint16(b, or16(f.op, arpOpRequest))
	b = append(b, orMAC(f.sha, testPeer)...)
	b = append(b, orIP(f.spa, testHost4)...)
	b = append(b, orMAC(f.tha, [6]byte{})...)
	b = append(b, orIP(f.tpa, testVIP4)...)
	return b
}

// hlen255Frame is the frame that used to stop the responder: an ARP header announcing a 255-byte
// hardware address, which mdlayher/arp's parser rejects with io.ErrUnexpectedEOF.
func hlen255Frame() []byte {
	b := append([]byte{}, ethernetBroadcast...)
	b = append(b, testPeer[:]...)
	b = append(b, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0xff, 0x04, 0x00, 0x01)
	return append(b, make([]byte, 46)...) // padded to 60 bytes, as on the wire
}

func mac(b ...byte) *[6]byte { m := [6]byte(b); return &m }

func TestDecideARP(t *testing.T) {
	self6 := [6]byte(testSelf)
	other := mac(0x02, 0, 0, 0, 0, 0x42)
	zero := netip.AddrFrom4([4]byte{})
	padded := append(arpFields{}.frame(), make([]byte, 18)...)
	tests := []struct {
		name  string
		frame []byte
		want  ARPDecision
	}{
		{"broadcast request for the VIP", arpFields{}.frame(),
			ARPDecision{Verdict: Reply, VIP: testVIP4, SenderMAC: testPeer, SenderIP: testHost4}},
		{"padded to 60 bytes", padded,
			ARPDecision{Verdict: Reply, VIP: testVIP4, SenderMAC: testPeer, SenderIP: testHost4}},
		{"second VIP", arpFields{tpa: testVIP4b}.frame(),
			ARPDecision{Verdict: Reply, VIP: testVIP4b, SenderMAC: testPeer, SenderIP: testHost4}},
		{"unicast to us (neighbour reachability probe)", arpFields{ethDst: &self6}.frame(),
			ARPDecision{Verdict: Reply, VIP: testVIP4, SenderMAC: testPeer, SenderIP: testHost4}},
		{"RFC 5227 probe from 0.0.0.0", arpFields{spa: zero}.frame(),
			ARPDecision{Verdict: Reply, VIP: testVIP4, SenderMAC: testPeer, SenderIP: zero}},
		{"unicast to another host", arpFields{ethDst: other}.frame(), ARPDecision{Verdict: DropWrongDestination}},
		{"request for another IP", arpFields{tpa: netip.MustParseAddr("10.0.0.7")}.frame(),
			ARPDecision{Verdict: DropNotOurVIP}},
		{"reply to the VIP", arpFields{op: arpOpReply}.frame(), ARPDecision{Verdict: DropNotRequest}},
		{"RARP operation", arpFields{op: 3}.frame(), ARPDecision{Verdict: DropNotRequest}},
		{"gratuitous request for the VIP from another MAC", arpFields{spa: testVIP4}.frame(),
			ARPDecision{Verdict: DropConflict, VIP: testVIP4, SenderMAC: testPeer, SenderIP: testVIP4}},
		{"gratuitous reply (arping -A) for the VIP from another MAC",
			arpFields{op: arpOpReply, spa: testVIP4b, tpa: testVIP4b, tha: &testPeer}.frame(),
			ARPDecision{Verdict: DropConflict, VIP: testVIP4b, SenderMAC: testPeer, SenderIP: testVIP4b}},
		{"another host answers for the VIP", arpFields{op: arpOpReply, spa: testVIP4, tpa: testHost4}.frame(),
			ARPDecision{Verdict: DropConflict, VIP: testVIP4, SenderMAC: testPeer, SenderIP: testVIP4}},
		{"our own announcement", arpFields{sha: &self6, spa: testVIP4}.frame(), ARPDecision{Verdict: DropFromSelf}},
		{"our Ethernet source, another sender MAC", arpFields{ethSrc: &self6}.frame(), ARPDecision{Verdict: DropFromSelf}},
		{"broadcast sender MAC", arpFields{sha: mac(0xff, 0xff, 0xff, 0xff, 0xff, 0xff)}.frame(),
			ARPDecision{Verdict: DropBadSender}},
		{"multicast sender MAC", arpFields{sha: mac(0x01, 0x00, 0x5e, 0, 0, 1)}.frame(), ARPDecision{Verdict: DropBadSender}},
		{"zero sender MAC", arpFields{sha: mac(0, 0, 0, 0, 0, 0)}.frame(), ARPDecision{Verdict: DropBadSender}},
		{"hardware length 255", hlen255Frame(), ARPDecision{Verdict: DropMalformed}},
		{"protocol length 16", arpFields{plen: 16}.frame(), ARPDecision{Verdict: DropMalformed}},
		{"hardware type 6 (IEEE 802)", arpFields{htype: 6}.frame(), ARPDecision{Verdict: DropMalformed}},
		{"protocol IPv6", arpFields{ptype: 0x86dd}.frame(), ARPDecision{Verdict: DropMalformed}},
		{"IPv4 ethertype", arpFields{ethType: 0x0800}.frame(), ARPDecision{Verdict: DropMalformed}},
		{"VLAN-tagged", arpFields{ethType: 0x8100}.frame(), ARPDecision{Verdict: DropMalformed}},
		{"truncated by one byte", arpFields{}.frame()[:arpFrameLen-1], ARPDecision{Verdict: DropMalformed}},
		{"Ethernet header only", arpFields{}.frame()[:ethHeaderLen], ARPDecision{Verdict: DropMalformed}},
		{"empty", []byte{}, ARPDecision{Verdict: DropMalformed}},
		{"nil", nil, ARPDecision{Verdict: DropMalformed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DecideARP(tc.frame, testVIPs4, testSelf)
			if got != tc.want {
				t.Fatalf("DecideARP = %+v (%s), want %+v (%s)", got, got.Verdict, tc.want, tc.want.Verdict)
			}
			if allocs := testing.AllocsPerRun(100, func() { DecideARP(tc.frame, testVIPs4, testSelf) }); allocs != 0 {
				t.Errorf("DecideARP allocates %.0f times per frame, want 0", allocs)
			}
			checkARPAgainstParser(t, tc.frame, got)
		})
	}
}

// checkARPAgainstParser cross-checks a decision with an independent parser (mdlayher/arp): whatever
// DecideARP answers or reports must be a well-formed ARP packet with the same fields.
func checkARPAgainstParser(t *testing.T, frame []byte, d ARPDecision) {
	t.Helper()
	if d.Verdict != Reply && d.Verdict != DropConflict {
		return
	}
	var p arp.Packet
	if err := p.UnmarshalBinary(frame[ethHeaderLen:]); err != nil {
		t.Fatalf("DecideARP said %s for a frame mdlayher/arp cannot parse: %v", d.Verdict, err)
	}
	if [6]byte(p.SenderHardwareAddr) != d.SenderMAC || p.SenderIP != d.SenderIP {
		t.Fatalf("sender %s %s, parser says %s %s", macString(d.SenderMAC), d.SenderIP, p.SenderHardwareAddr, p.SenderIP)
	}
	if d.Verdict == Reply && (p.Operation != arp.OperationRequest || p.TargetIP != d.VIP) {
		t.Fatalf("answered %s for %s, parser says op %v target %s", d.Verdict, d.VIP, p.Operation, p.TargetIP)
	}
}

func TestAppendARPReply(t *testing.T) {
	for _, sender := range []netip.Addr{testHost4, netip.AddrFrom4([4]byte{})} {
		t.Run(sender.String(), func(t *testing.T) {
			d := DecideARP(arpFields{spa: sender}.frame(), testVIPs4, testSelf)
			if d.Verdict != Reply {
				t.Fatalf("verdict %s", d.Verdict)
			}
			b := appendARPReply(nil, d, testSelf)
			if len(b) != ethMinLen {
				t.Fatalf("reply is %d bytes, want %d (Ethernet minimum)", len(b), ethMinLen)
			}
			var f ethernet.Frame
			if err := f.UnmarshalBinary(b); err != nil {
				t.Fatalf("parse reply frame: %v", err)
			}
			if [6]byte(f.Destination) != testPeer || !bytes.Equal(f.Source, testSelf) || f.EtherType != ethernet.EtherTypeARP {
				t.Fatalf("Ethernet header %s -> %s type %v", f.Source, f.Destination, f.EtherType)
			}
			var p arp.Packet
			if err := p.UnmarshalBinary(f.Payload); err != nil {
				t.Fatalf("parse ARP reply: %v", err)
			}
			want := arp.Packet{HardwareType: 1, ProtocolType: uint16(ethernet.EtherTypeIPv4), HardwareAddrLength: 6,
				IPLength: 4, Operation: arp.OperationReply, SenderHardwareAddr: testSelf, SenderIP: testVIP4,
				TargetHardwareAddr: testPeer[:], TargetIP: sender}
			if p.Operation != want.Operation || !bytes.Equal(p.SenderHardwareAddr, want.SenderHardwareAddr) ||
				p.SenderIP != want.SenderIP || !bytes.Equal(p.TargetHardwareAddr, want.TargetHardwareAddr) ||
				p.TargetIP != want.TargetIP || p.HardwareType != want.HardwareType || p.ProtocolType != want.ProtocolType {
				t.Fatalf("reply %+v, want %+v", p, want)
			}
			// Appending reuses the buffer: no allocation once it has the capacity.
			buf := make([]byte, 0, ethMinLen)
			if allocs := testing.AllocsPerRun(100, func() { buf = appendARPReply(buf[:0], d, testSelf) }); allocs != 0 {
				t.Errorf("appendARPReply allocates %.0f times, want 0", allocs)
			}
		})
	}
}

// nsMsg builds a neighbour solicitation for target with raw options.
func nsMsg(target netip.Addr, opts ...[]byte) []byte {
	b := []byte{icmpTypeNeighborSolicitation, 0, 0, 0, 0, 0, 0, 0}
	b = append(b, target.AsSlice()...)
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// sllaOpt is a source link-layer address option.
func sllaOpt(m [6]byte) []byte { return append([]byte{ndpOptSourceLinkLayer, 1}, m[:]...) }

func TestDecideNDP(t *testing.T) {
	unspec := netip.IPv6Unspecified()
	linkLocal := netip.MustParseAddr("fe80::1").WithZone("eth0")
	valid := nsMsg(testVIP6, sllaOpt(testPeer))
	// ndp's own encoder must produce what we accept.
	marshalled, err := ndp.MarshalMessage(&ndp.NeighborSolicitation{TargetAddress: testVIP6,
		Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: testPeer[:]}}})
	if err != nil {
		t.Fatal(err)
	}
	withCode := append([]byte{}, valid...)
	withCode[1] = 1
	answer := NDPDecision{Verdict: Reply, Target: testVIP6, Source: testHost6, SourceMAC: testPeer, HasSourceMAC: true}
	tests := []struct {
		name     string
		msg      []byte
		src      netip.Addr
		hopLimit int
		want     NDPDecision
	}{
		{"solicitation for the VIP", valid, testHost6, 255, answer},
		{"encoded by mdlayher/ndp", marshalled, testHost6, 255, answer},
		{"link-local source keeps its zone", valid, linkLocal, 255,
			NDPDecision{Verdict: Reply, Target: testVIP6, Source: linkLocal, SourceMAC: testPeer, HasSourceMAC: true}},
		{"unicast, without source link-layer address", nsMsg(testVIP6), testHost6, 255,
			NDPDecision{Verdict: Reply, Target: testVIP6, Source: testHost6}},
		{"duplicate address detection", nsMsg(testVIP6), unspec, 255,
			NDPDecision{Verdict: Reply, Target: testVIP6, Source: unspec}},
		{"unknown option (nonce) ignored", nsMsg(testVIP6, sllaOpt(testPeer), []byte{14, 1, 1, 2, 3, 4, 5, 6}),
			testHost6, 255, answer},
		{"hop limit 64 (routed from off-link)", valid, testHost6, 64, NDPDecision{Verdict: DropBadHopLimit}},
		{"hop limit 254", valid, testHost6, 254, NDPDecision{Verdict: DropBadHopLimit}},
		{"hop limit unknown", valid, testHost6, -1, NDPDecision{Verdict: DropBadHopLimit}},
		{"another target", nsMsg(testHost6, sllaOpt(testPeer)), testHost6, 255, NDPDecision{Verdict: DropNotOurVIP}},
		{"advertisement", append([]byte{136}, valid[1:]...), testHost6, 255, NDPDecision{Verdict: DropNotRequest}},
		{"empty", nil, testHost6, 255, NDPDecision{Verdict: DropNotRequest}},
		{"code 1", withCode, testHost6, 255, NDPDecision{Verdict: DropMalformed}},
		{"23 bytes", valid[:23], testHost6, 255, NDPDecision{Verdict: DropMalformed}},
		{"multicast target", nsMsg(allNodes), testHost6, 255, NDPDecision{Verdict: DropMalformed}},
		{"option of length 0", nsMsg(testVIP6, []byte{1, 0, 0, 0, 0, 0, 0, 0}), testHost6, 255,
			NDPDecision{Verdict: DropMalformed}},
		{"option longer than the message", nsMsg(testVIP6, []byte{14, 2, 0, 0, 0, 0, 0, 0}), testHost6, 255,
			NDPDecision{Verdict: DropMalformed}},
		{"one stray option byte", nsMsg(testVIP6, sllaOpt(testPeer), []byte{1}), testHost6, 255,
			NDPDecision{Verdict: DropMalformed}},
		{"16-byte link-layer address", nsMsg(testVIP6, append([]byte{1, 2}, make([]byte, 14)...)), testHost6, 255,
			NDPDecision{Verdict: DropMalformed}},
		{"two source link-layer addresses", nsMsg(testVIP6, sllaOpt(testPeer), sllaOpt(testPeer)), testHost6, 255,
			NDPDecision{Verdict: DropMalformed}},
		{"DAD with a source link-layer address", valid, unspec, 255, NDPDecision{Verdict: DropMalformed}},
		// A socket reports the unspecified source with the interface's zone: still DAD.
		{"DAD, zoned source, with a link-layer address", valid, unspec.WithZone("eth0"), 255, NDPDecision{Verdict: DropMalformed}},
		{"DAD, zoned source", nsMsg(testVIP6), unspec.WithZone("eth0"), 255,
			NDPDecision{Verdict: Reply, Target: testVIP6, Source: unspec.WithZone("eth0")}},
		{"zoned multicast source", nsMsg(testVIP6), netip.MustParseAddr("ff02::1%eth0"), 255, NDPDecision{Verdict: DropBadSender}},
		{"IPv4 source", valid, testHost4, 255, NDPDecision{Verdict: DropMalformed}},
		{"no source", valid, netip.Addr{}, 255, NDPDecision{Verdict: DropMalformed}},
		{"our own MAC", nsMsg(testVIP6, sllaOpt([6]byte(testSelf))), testHost6, 255, NDPDecision{Verdict: DropFromSelf}},
		{"multicast source", nsMsg(testVIP6), allNodes, 255, NDPDecision{Verdict: DropBadSender}},
		{"multicast link-layer address", nsMsg(testVIP6, sllaOpt([6]byte{0x33, 0x33, 0, 0, 0, 1})), testHost6, 255,
			NDPDecision{Verdict: DropBadSender}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := DecideNDP(tc.msg, tc.src, tc.hopLimit, testVIPs6, testSelf)
			if got != tc.want {
				t.Fatalf("DecideNDP = %+v (%s), want %+v (%s)", got, got.Verdict, tc.want, tc.want.Verdict)
			}
			if allocs := testing.AllocsPerRun(100, func() {
				DecideNDP(tc.msg, tc.src, tc.hopLimit, testVIPs6, testSelf)
			}); allocs != 0 {
				t.Errorf("DecideNDP allocates %.0f times per message, want 0", allocs)
			}
			checkNDPAgainstParser(t, tc.msg, got)
		})
	}
}

// checkNDPAgainstParser cross-checks an answer with mdlayher/ndp: when it can parse the message, it must
// be a solicitation for the same target with the same source link-layer address. (It may reject options we
// rightly ignore, RFC 4861 §4.6, so a parse error is not a failure.)
func checkNDPAgainstParser(t *testing.T, msg []byte, d NDPDecision) {
	t.Helper()
	if d.Verdict != Reply {
		return
	}
	m, err := ndp.ParseMessage(msg)
	if err != nil {
		return
	}
	ns, ok := m.(*ndp.NeighborSolicitation)
	if !ok || ns.TargetAddress != d.Target {
		t.Fatalf("answered for %s; mdlayher/ndp parses %#v", d.Target, m)
	}
	for _, o := range ns.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Source {
			if !d.HasSourceMAC || !bytes.Equal(lla.Addr, d.SourceMAC[:]) {
				t.Fatalf("source link-layer address %s, parser says %s", macString(d.SourceMAC), lla.Addr)
			}
		}
	}
}

func TestVerdictLabels(t *testing.T) {
	seen := map[string]Verdict{}
	for v := Verdict(0); v < numVerdicts; v++ {
		l := v.String()
		if l == "" || l == "unknown" {
			t.Errorf("verdict %d has no label", v)
		}
		if prev, dup := seen[l]; dup {
			t.Errorf("verdicts %d and %d share the label %q", prev, v, l)
		}
		seen[l] = v
	}
	if numVerdicts.String() != "unknown" {
		t.Errorf("out-of-range verdict label %q", numVerdicts.String())
	}
}
