package vip

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
)

// vmFilter loads a kernel filter into x/net/bpf's VM.
func vmFilter(t testing.TB, raw []bpf.RawInstruction, err error) *bpf.VM {
	t.Helper()
	if err != nil {
		t.Fatalf("build the filter: %v", err)
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("filter does not disassemble: %v", ins)
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("filter rejected by the BPF VM: %v", err)
	}
	return vm
}

// vmARPFilter is the ARP socket's filter without the Linux-only packet-type check.
func vmARPFilter(t testing.TB, vips []netip.Addr) *bpf.VM {
	t.Helper()
	raw, err := arpFilter(vips, false)
	return vmFilter(t, raw, err)
}

func vmNDPFilter(t testing.TB, vips []netip.Addr) *bpf.VM {
	t.Helper()
	raw, err := ndpFilter(vips)
	return vmFilter(t, raw, err)
}

// FuzzDecideARP feeds DecideARP arbitrary frames. Beyond "never panics", it checks what the decision
// promises: an answer or a conflict is a well-formed ARP packet for one of our VIPs (by mdlayher/arp's
// parser), an answer never goes to ourselves or a group address, and the kernel filter agrees — it passes
// every frame we answer or report, and nothing we would call malformed.
func FuzzDecideARP(f *testing.F) {
	zero := netip.AddrFrom4([4]byte{})
	for _, seed := range [][]byte{
		arpFields{}.frame(),
		append(arpFields{}.frame(), make([]byte, 18)...),
		hlen255Frame(),
		arpFields{spa: testVIP4}.frame(),
		arpFields{op: arpOpReply, spa: testVIP4, tha: &testPeer}.frame(),
		arpFields{spa: zero}.frame(),
		arpFields{tpa: netip.MustParseAddr("10.0.0.7")}.frame(),
		arpFields{plen: 16}.frame(),
		arpFields{}.frame()[:arpFrameLen-1],
		{},
	} {
		f.Add(seed)
	}
	vm := vmARPFilter(f, testVIPs4)
	f.Fuzz(func(t *testing.T, frame []byte) {
		d := DecideARP(frame, testVIPs4, testSelf)
		if !slices.Contains(arpVerdicts, d.Verdict) || d.Verdict >= DropFenced {
			t.Fatalf("verdict %s is not one DecideARP returns", d.Verdict)
		}
		checkARPAgainstParser(t, frame, d)
		if d.Verdict == Reply {
			if !slices.Contains(testVIPs4, d.VIP) || d.SenderMAC[0]&1 != 0 || d.SenderMAC == [6]byte(testSelf) {
				t.Fatalf("answer %+v: not our VIP, or to a group address or ourselves", d)
			}
			checkARPReply(t, appendARPReply(nil, d, testSelf), d)
		}
		n, err := vm.Run(frame)
		if err != nil {
			t.Fatalf("filter VM: %v", err)
		}
		if (d.Verdict == Reply || d.Verdict == DropConflict) && n == 0 {
			t.Fatalf("the kernel filter drops a frame DecideARP says %s", d.Verdict)
		}
		if n > 0 && d.Verdict == DropMalformed {
			t.Fatal("the kernel filter passes a frame DecideARP says is malformed")
		}
	})
}

// checkARPReply checks that a built reply, judged as a frame, is a reply from us, not a request anyone
// (including another vipd) would answer: the responder can never be made to talk to itself.
func checkARPReply(t *testing.T, reply []byte, d ARPDecision) {
	t.Helper()
	if got := DecideARP(reply, []netip.Addr{d.VIP}, testSelf); got.Verdict != DropFromSelf {
		t.Fatalf("our reply judged %s by ourselves, want from_self", got.Verdict)
	}
	if got := DecideARP(reply, []netip.Addr{d.VIP}, d.SenderMAC[:]); got.Verdict == Reply {
		t.Fatal("our reply would be answered by its recipient")
	}
}

// FuzzDecideNDP feeds DecideNDP arbitrary messages, sources (with or without a zone) and hop limits. An answer must be a valid
// neighbour solicitation (RFC 4861 §7.1.1) for one of our VIPs that arrived with hop limit 255, pass the
// kernel filter, and agree with mdlayher/ndp's parser when that parser accepts the message.
func FuzzDecideNDP(f *testing.F) {
	valid := nsMsg(testVIP6, sllaOpt(testPeer))
	host := testHost6.As16()
	unspec := netip.IPv6Unspecified().As16()
	for _, seed := range []struct {
		msg []byte
		src []byte
		hop uint8
	}{
		{valid, host[:], 255},
		{valid, host[:], 64},
		{nsMsg(testVIP6), unspec[:], 255},
		{nsMsg(testVIP6, []byte{1, 0, 0, 0, 0, 0, 0, 0}), host[:], 255},
		{nsMsg(testVIP6, []byte{14, 2, 0, 0, 0, 0, 0, 0}), host[:], 255},
		{valid[:23], host[:], 255},
		{append([]byte{136}, valid[1:]...), host[:], 255},
		{nil, nil, 255},
	} {
		f.Add(seed.msg, seed.src, seed.hop, false)
		f.Add(seed.msg, seed.src, seed.hop, true)
	}
	vm := vmNDPFilter(f, testVIPs6)
	f.Fuzz(func(t *testing.T, msg, src []byte, hop uint8, zoned bool) {
		var addr netip.Addr
		if len(src) == 16 {
			addr = netip.AddrFrom16([16]byte(src))
			if zoned { // as a socket reports link-local and unspecified sources
				addr = addr.WithZone("eth0")
			}
		}
		d := DecideNDP(msg, addr, int(hop), testVIPs6, testSelf)
		if !slices.Contains(ndpVerdicts, d.Verdict) || d.Verdict >= DropFenced {
			t.Fatalf("verdict %s is not one DecideNDP returns", d.Verdict)
		}
		n, err := vm.Run(msg)
		if err != nil {
			t.Fatalf("filter VM: %v", err)
		}
		if d.Verdict == Reply && n == 0 {
			t.Fatal("the kernel filter drops a solicitation DecideNDP answers")
		}
		if n > 0 && (d.Verdict == DropNotRequest || d.Verdict == DropNotOurVIP) {
			t.Fatalf("the kernel filter passes a message DecideNDP says is %s", d.Verdict)
		}
		if d.Verdict != Reply {
			return
		}
		if hop != 255 || len(msg) < nsLen || msg[0] != icmpTypeNeighborSolicitation || msg[1] != 0 ||
			!slices.Contains(testVIPs6, d.Target) || d.Source != addr {
			t.Fatalf("answered %+v for hop limit %d, message % x", d, hop, msg)
		}
		if addr.WithZone("").IsUnspecified() && d.HasSourceMAC {
			t.Fatal("answered a DAD solicitation carrying a source link-layer address")
		}
		checkNDPAgainstParser(t, msg, d)
	})
}
