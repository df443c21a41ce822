package flowfwd

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/vipd/vipd/internal/fielderr"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestNewSelector(t *testing.T) {
	for _, tc := range []struct {
		name      string
		vips      []netip.Addr
		ports     []uint16
		wantErr   string // substring; "" = valid
		wantVIPs  []netip.Addr
		wantPorts []uint16
	}{
		{name: "sorted and deduplicated", vips: addrs("10.0.0.2", "fd00::1", "10.0.0.1", "10.0.0.2"), ports: []uint16{443, 80, 443},
			wantVIPs: addrs("10.0.0.1", "10.0.0.2", "fd00::1"), wantPorts: []uint16{80, 443}},
		{name: "mapped IPv4 is IPv4", vips: addrs("::ffff:10.0.0.1"), ports: []uint16{1},
			wantVIPs: addrs("10.0.0.1"), wantPorts: []uint16{1}},
		{name: "no vips", ports: []uint16{1}, wantErr: "vips is empty"},
		{name: "no ports", vips: addrs("10.0.0.1"), wantErr: "ports is empty"},
		{name: "zero address", vips: []netip.Addr{{}}, ports: []uint16{1}, wantErr: "vips[0] is the zero netip.Addr"},
		{name: "unspecified", vips: addrs("10.0.0.1", "0.0.0.0"), ports: []uint16{1}, wantErr: "vips[1] 0.0.0.0 is not a unicast"},
		{name: "multicast", vips: addrs("ff02::1"), ports: []uint16{1}, wantErr: "not a unicast"},
		{name: "loopback", vips: addrs("127.0.0.1"), ports: []uint16{1}, wantErr: "not a unicast"},
		{name: "zone", vips: addrs("fe80::1%eth0"), ports: []uint16{1}, wantErr: "has a zone"},
		{name: "port 0", vips: addrs("10.0.0.1"), ports: []uint16{80, 0}, wantErr: "ports[1] is 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := newSelector("Mark", tc.vips, tc.ports)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidArgument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !s.equal(selector{vips: tc.wantVIPs, ports: tc.wantPorts}) {
				t.Fatalf("got %v %v, want %v %v", s.vips, s.ports, tc.wantVIPs, tc.wantPorts)
			}
		})
	}
}

func TestSelectorOf(t *testing.T) {
	s, err := newSelector("Mark", addrs("10.0.0.1", "fd00::1"), []uint16{80})
	if err != nil {
		t.Fatal(err)
	}
	if v4 := s.of(true); len(v4.vips) != 1 || !v4.vips[0].Is4() || len(v4.ports) != 1 {
		t.Errorf("of(ipv4) = %+v", v4)
	}
	s, _ = newSelector("Mark", addrs("10.0.0.1"), []uint16{80})
	if v6 := s.of(false); !v6.empty() || v6.ports != nil {
		t.Errorf("of(ipv6) of an IPv4-only selector = %+v, want empty", v6)
	}
}

func TestCheckForward(t *testing.T) {
	vips4, vips6, ports := addrs("10.0.0.50"), addrs("fd00::50"), []uint16{6443}
	for _, tc := range []struct {
		name    string
		peer    netip.Addr
		iface   string
		vips    []netip.Addr
		wantErr string
	}{
		{name: "IPv4", peer: netip.MustParseAddr("10.0.0.1"), iface: "eth0", vips: vips4},
		{name: "IPv6 link-local scoped to iface", peer: netip.MustParseAddr("fe80::1%eth0"), iface: "eth0", vips: vips6},
		{name: "no iface", peer: netip.MustParseAddr("10.0.0.1"), vips: vips4, wantErr: "iface is empty"},
		{name: "no peer", iface: "eth0", vips: vips4, wantErr: "peer is the zero"},
		{name: "peer unspecified", peer: netip.MustParseAddr("::"), iface: "eth0", vips: vips6, wantErr: "not a unicast"},
		{name: "peer is the VIP", peer: netip.MustParseAddr("10.0.0.50"), iface: "eth0", vips: vips4, wantErr: "is one of the vips"},
		{name: "families differ", peer: netip.MustParseAddr("10.0.0.1"), iface: "eth0", vips: vips6, wantErr: "other address family"},
		{name: "zone of another interface", peer: netip.MustParseAddr("fe80::1%eth1"), iface: "eth0", vips: vips6, wantErr: "scoped to eth1"},
		{name: "bad vips", peer: netip.MustParseAddr("10.0.0.1"), iface: "eth0", wantErr: "vips is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, err := checkForward(tc.peer, tc.iface, tc.vips, ports)
			if tc.wantErr != "" {
				if !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidArgument containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tg.peer.Zone() != "" {
				t.Errorf("peer %s keeps its zone: the interface is the scope", tg.peer)
			}
		})
	}
}

func TestTargetEqual(t *testing.T) {
	a, _ := checkForward(netip.MustParseAddr("10.0.0.1"), "eth0", addrs("10.0.0.50"), []uint16{1})
	b, _ := checkForward(netip.MustParseAddr("10.0.0.1"), "eth0", addrs("10.0.0.50"), []uint16{1})
	if !a.equal(b) || !(*target)(nil).equal(nil) || a.equal(nil) || (*target)(nil).equal(a) {
		t.Fatal("equal is wrong for identical or nil targets")
	}
	b.index = 7 // the interface was re-created
	if a.equal(b) {
		t.Fatal("targets with different interface indexes compare equal")
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		mark uint32
		ok   bool
	}{{0, true}, {1, true}, {1 << 31, true}, {3, false}, {0xffffffff, false}} {
		err := Config{CtMark: tc.mark}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("CtMark %#x: err = %v, want ok=%v", tc.mark, err, tc.ok)
		}
		if err != nil {
			fe, ok := fielderr.As(err)
			if !ok || fe.Field != "CtMark" || !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("CtMark %#x: err = %#v, want a fielderr for CtMark wrapping ErrInvalidConfig", tc.mark, err)
			}
		}
	}
	if got := (Config{}).ctMark(); got != DefaultCtMark {
		t.Errorf("zero CtMark means %#x, want DefaultCtMark", got)
	}
}
