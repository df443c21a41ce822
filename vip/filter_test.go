package vip

import (
	"net/netip"
	"testing"
)

func TestARPFilter(t *testing.T) {
	other := netip.MustParseAddr("10.0.0.7")
	many := make([]netip.Addr, maxARPFilterVIPs)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i)})
	}
	last := many[len(many)-1]
	tests := []struct {
		name  string
		vips  []netip.Addr
		frame []byte
		pass  bool
	}{
		{"request for the VIP", testVIPs4, arpFields{}.frame(), true},
		{"request for the second VIP, padded", testVIPs4, append(arpFields{tpa: testVIP4b}.frame(), 0, 0, 0), true},
		{"gratuitous request for the VIP", testVIPs4, arpFields{spa: testVIP4}.frame(), true},
		{"gratuitous reply for the VIP", testVIPs4, arpFields{op: arpOpReply, spa: testVIP4, tpa: testVIP4}.frame(), true},
		{"another holder's reply", testVIPs4, arpFields{op: arpOpReply, spa: testVIP4, tpa: testHost4}.frame(), true},
		{"request for another IP", testVIPs4, arpFields{tpa: other}.frame(), false},
		{"gratuitous for another IP", testVIPs4, arpFields{spa: other, tpa: other}.frame(), false},
		{"reply between other hosts", testVIPs4, arpFields{op: arpOpReply, spa: other, tpa: testHost4}.frame(), false},
		{"RARP operation for the VIP", testVIPs4, arpFields{op: 3}.frame(), false},
		{"hardware length 255", testVIPs4, hlen255Frame(), false},
		{"protocol length 16", testVIPs4, arpFields{plen: 16}.frame(), false},
		{"hardware type 6", testVIPs4, arpFields{htype: 6}.frame(), false},
		{"IPv6 protocol", testVIPs4, arpFields{ptype: 0x86dd}.frame(), false},
		{"not ARP", testVIPs4, arpFields{ethType: 0x0800}.frame(), false},
		{"cut before the target IP", testVIPs4, arpFields{spa: testVIP4}.frame()[:arpFrameLen-1], false},
		{"empty", testVIPs4, nil, false},
		{"no IPv4 VIP", testVIPs6, arpFields{}.frame(), false},
		{"100 VIPs: the last one", many, arpFields{tpa: last}.frame(), true},
		{"100 VIPs: another IP", many, arpFields{tpa: other}.frame(), false},
		// Beyond maxARPFilterVIPs the jumps would not fit: shape only, DecideARP matches addresses.
		{"101 VIPs: shape only", append(many, testVIP4), arpFields{tpa: other}.frame(), true},
		{"101 VIPs: malformed", append(many, testVIP4), hlen255Frame(), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vmARPFilter(t, tc.vips).Run(tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.pass {
				t.Fatalf("filter returned %d, want pass=%v", n, tc.pass)
			}
			if tc.pass && n < len(tc.frame) && n < arpFrameLen {
				t.Fatalf("filter keeps %d bytes, fewer than an ARP frame", n)
			}
		})
	}
	// The kernel's variant (with the outgoing-frame check) must assemble for the same sets.
	for _, vips := range [][]netip.Addr{testVIPs4, many, append(many, testVIP4)} {
		if _, err := arpFilter(vips, true); err != nil {
			t.Errorf("kernel filter for %d VIPs: %v", len(vips), err)
		}
	}
}

func TestNDPFilter(t *testing.T) {
	many := make([]netip.Addr, maxNDPFilterVIPs)
	for i := range many {
		many[i] = netip.AddrFrom16([16]byte{0: 0xfd, 1: 1, 15: byte(i)})
	}
	last := many[len(many)-1]
	valid := nsMsg(testVIP6, sllaOpt(testPeer))
	withCode := append([]byte{}, valid...)
	withCode[1] = 1
	// A target matching the VIP's first three words only: each word is checked.
	near := testVIP6.As16()
	near[15]++
	tests := []struct {
		name string
		vips []netip.Addr
		msg  []byte
		pass bool
	}{
		{"solicitation for the VIP", testVIPs6, valid, true},
		{"without options", testVIPs6, nsMsg(testVIP6), true},
		{"with a malformed option: left to DecideNDP", testVIPs6, nsMsg(testVIP6, []byte{1, 0, 0, 0, 0, 0, 0, 0}), true},
		{"second VIP", []netip.Addr{testVIP4, testHost6, testVIP6}, valid, true},
		{"another target", testVIPs6, nsMsg(testHost6, sllaOpt(testPeer)), false},
		{"target differing in the last word", testVIPs6, nsMsg(netip.AddrFrom16(near)), false},
		{"advertisement", testVIPs6, append([]byte{136}, valid[1:]...), false},
		{"code 1", testVIPs6, withCode, false},
		{"23 bytes", testVIPs6, valid[:23], false},
		{"empty", testVIPs6, nil, false},
		{"no IPv6 VIP", testVIPs4, valid, false},
		{"30 VIPs: the last one", many, nsMsg(last), true},
		{"30 VIPs: another target", many, valid, false},
		{"31 VIPs: shape only", append(many, testHost6), valid, true},
		{"31 VIPs: advertisement", append(many, testHost6), append([]byte{136}, valid[1:]...), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := vmNDPFilter(t, tc.vips).Run(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if (n > 0) != tc.pass {
				t.Fatalf("filter returned %d, want pass=%v", n, tc.pass)
			}
			if tc.pass && n < len(tc.msg) {
				t.Fatalf("filter keeps %d of %d bytes: the options would be cut", n, len(tc.msg))
			}
		})
	}
}
