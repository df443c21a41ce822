//go:build linux

package vip_test

import (
	"context"
	"errors"
	"github.com/vipd/vipd/internal/testutil"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/vishvananda/netlink"

	"github.com/vipd/vipd/vip"
)

var (
	nsVIP4 = netip.MustParsePrefix("10.77.0.50/24")
	nsVIP6 = netip.MustParsePrefix("fd77::50/64")
)

// kernelIn creates a LinuxKernel inside n (so its netlink socket lives there).
func kernelIn(t *testing.T, n *testNS) *vip.LinuxKernel {
	t.Helper()
	var k *vip.LinuxKernel
	var err error
	n.do(t, func() { k, err = vip.NewLinuxKernel(n.ifname, testutil.Logger(t)) })
	if err != nil {
		t.Fatalf("NewLinuxKernel in %s: %v", n.name, err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// answering runs k.Answer for ips inside n until the returned stop function is called; stop waits
// for Answer to return and checks that it returned nil.
func answering(t *testing.T, n *testNS, k *vip.LinuxKernel, ips ...netip.Addr) (stop func()) {
	t.Helper()
	return answeringGated(t, n, k, func() bool { return true }, ips...)
}

// answeringGated is answering with the per-reply gate the Manager passes (its leadership fence).
func answeringGated(t *testing.T, n *testNS, k *vip.LinuxKernel, allow func() bool, ips ...netip.Addr) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	done := n.start(t, func() { err = k.Answer(ctx, ips, allow) })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Answer did not return after cancel")
		}
		if err != nil {
			t.Errorf("Answer returned %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func readSysctl(t *testing.T, n *testNS, path string) string {
	t.Helper()
	var s string
	n.do(t, func() {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("read %s: %v", path, err)
		}
		s = strings.TrimSpace(string(b))
	})
	return s
}

func TestLinuxKernelAddressesOnLo(t *testing.T) {
	l := newLAN(t, 1)
	a := l.nodes[0]
	k := kernelIn(t, a)
	if got := readSysctl(t, a, "/proc/sys/net/ipv4/conf/"+a.ifname+"/arp_ignore"); got != "1" {
		t.Errorf("arp_ignore = %s after NewLinuxKernel, want 1", got)
	}
	if got := readSysctl(t, a, "/proc/sys/net/ipv4/conf/"+a.ifname+"/arp_announce"); got != "2" {
		t.Errorf("arp_announce = %s after NewLinuxKernel, want 2", got)
	}
	lo, err := a.nl.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []netip.Prefix{nsVIP4, nsVIP6} {
		t.Run(p.String(), func(t *testing.T) {
			for i := 0; i < 2; i++ {
				if err := k.AddAddr(p); err != nil {
					t.Fatalf("AddAddr #%d: %v", i+1, err)
				}
			}
			if has, err := k.HasAddr(p); err != nil || !has {
				t.Fatalf("HasAddr after add = %v, %v", has, err)
			}
			family, bits := netlink.FAMILY_V6, 128
			if p.Addr().Is4() {
				family, bits = netlink.FAMILY_V4, 32
			}
			addrs, err := a.nl.AddrList(lo, family)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, ad := range addrs {
				if ip, _ := netip.AddrFromSlice(ad.IP); ip.Unmap() == p.Addr() {
					found = true
					if ones, _ := ad.Mask.Size(); ones != bits {
						t.Errorf("VIP on lo as /%d, want /%d", ones, bits)
					}
					if p.Addr().Is4() && ad.Label != vip.LoLabel {
						t.Errorf("label %q, want %q", ad.Label, vip.LoLabel)
					}
				}
			}
			if !found {
				t.Fatalf("VIP not on lo: %v", addrs)
			}
			for i := 0; i < 2; i++ {
				if err := k.DelAddr(p); err != nil {
					t.Fatalf("DelAddr #%d: %v", i+1, err)
				}
			}
			if has, err := k.HasAddr(p); err != nil || has {
				t.Fatalf("HasAddr after delete = %v, %v", has, err)
			}
		})
	}
	// A crashed run left a labelled VIP (even one no longer configured): Cleanup removes it.
	stale := netip.MustParsePrefix("10.77.0.99/24")
	if err := k.AddAddr(stale); err != nil {
		t.Fatal(err)
	}
	if err := k.Cleanup(); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if has, _ := k.HasAddr(stale); has {
		t.Fatal("stale VIP still on lo after Cleanup")
	}
}

// resolve sends ARP requests for ip from the client until one is answered or d expires; it returns
// the answering MAC or "".
func resolve(t *testing.T, l *lan, ip netip.Addr, d time.Duration) string {
	t.Helper()
	var mac string
	l.client.do(t, func() {
		ifi, err := net.InterfaceByName("br0")
		if err != nil {
			t.Errorf("br0: %v", err)
			return
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			t.Errorf("ARP client: %v", err)
			return
		}
		defer c.Close()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
				t.Errorf("deadline: %v", err)
				return
			}
			hw, err := c.Resolve(ip)
			if err == nil {
				mac = hw.String()
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("resolve %s: %v", ip, err)
				return
			}
		}
	})
	return mac
}

func TestLinuxKernelAnswersARPOnlyWhileRunning(t *testing.T) {
	l := newLAN(t, 1)
	a := l.nodes[0]
	k := kernelIn(t, a)
	if err := k.AddAddr(nsVIP4); err != nil {
		t.Fatal(err)
	}
	ip := nsVIP4.Addr()
	stop := answering(t, a, k, ip)
	if got, want := resolve(t, l, ip, 2*time.Second), k.HardwareAddr().String(); got != want {
		t.Fatalf("ARP for the VIP answered by %q, want our MAC %s", got, want)
	}
	// The process stops (as if SIGKILLed or paused): the address is still on lo, yet nobody answers,
	// because arp_ignore=1 keeps the kernel silent for addresses not on the asking interface.
	stop()
	if got := resolve(t, l, ip, 400*time.Millisecond); got != "" {
		t.Fatalf("ARP for the VIP answered by %s after the responder stopped", got)
	}
	// Control: with arp_ignore=0 (a plain keepalived-style setup) the kernel itself answers — the
	// behaviour that left two holders after a crash.
	a.sysctl(t, "net.ipv4.conf."+a.ifname+".arp_ignore=0")
	a.sysctl(t, "net.ipv4.conf.all.arp_ignore=0")
	if got := resolve(t, l, ip, 2*time.Second); got != k.HardwareAddr().String() {
		t.Fatalf("control failed: with arp_ignore=0 the kernel should answer, got %q", got)
	}
}

// TestLinuxKernelGateSilencesResponder is the paused-and-resumed holder: the responder runs, but while its
// gate (the Manager's proof of leadership) is closed it sends no reply, and it answers again once open.
func TestLinuxKernelGateSilencesResponder(t *testing.T) {
	l := newLAN(t, 1)
	a := l.nodes[0]
	k := kernelIn(t, a)
	if err := k.AddAddr(nsVIP4); err != nil {
		t.Fatal(err)
	}
	ip := nsVIP4.Addr()
	var open atomic.Bool
	answeringGated(t, a, k, open.Load, ip)
	if got := resolve(t, l, ip, 400*time.Millisecond); got != "" {
		t.Fatalf("ARP for the VIP answered by %s with the gate closed", got)
	}
	open.Store(true)
	if got, want := resolve(t, l, ip, 2*time.Second), k.HardwareAddr().String(); got != want {
		t.Fatalf("with the gate open, ARP answered by %q, want %s", got, want)
	}
}

func TestAnnouncementMovesClientNeighbourCache(t *testing.T) {
	for _, p := range []netip.Prefix{nsVIP4, nsVIP6} {
		t.Run(p.String(), func(t *testing.T) {
			l := newLAN(t, 2)
			a, b := l.nodes[0], l.nodes[1]
			ka, kb := kernelIn(t, a), kernelIn(t, b)
			macA, macB := ka.HardwareAddr().String(), kb.HardwareAddr().String()
			ip := p.Addr()

			// A holds the VIP; the client resolves it through A's responder.
			if err := ka.AddAddr(p); err != nil {
				t.Fatal(err)
			}
			stopA := answering(t, a, ka, ip)
			testutil.WaitFor(t, 3*time.Second, "client resolves the VIP to A", func() bool {
				l.poke(t, ip)
				return l.neighbour(t, ip) == macA
			})

			// Takeover without announcements: A releases, B takes the address and answers, but the
			// client's cache keeps pointing at A.
			stopA()
			if err := ka.DelAddr(p); err != nil {
				t.Fatal(err)
			}
			if err := kb.AddAddr(p); err != nil {
				t.Fatal(err)
			}
			answering(t, b, kb, ip)
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				if got := l.neighbour(t, ip); got != macA {
					t.Fatalf("without announcements the client's entry changed to %q; this test could not tell", got)
				}
				time.Sleep(20 * time.Millisecond)
			}

			// B announces: the client's entry follows the new holder at once.
			var err error
			b.do(t, func() { err = kb.Announce(ip) })
			if err != nil {
				t.Fatalf("Announce: %v", err)
			}
			testutil.WaitFor(t, time.Second, "client's neighbour entry moves to B", func() bool {
				return l.neighbour(t, ip) == macB
			})
		})
	}
}

func TestResolveInterface(t *testing.T) {
	l := newLAN(t, 1)
	a := l.nodes[0]
	tests := []struct {
		name    string
		iface   string
		vips    []netip.Prefix
		want    string
		wantErr bool
	}{
		{"by subnet", "", []netip.Prefix{nsVIP4}, a.ifname, false},
		{"dual stack", "", []netip.Prefix{nsVIP4, nsVIP6}, a.ifname, false},
		{"explicit", a.ifname, []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, a.ifname, false},
		{"explicit missing", "nope0", []netip.Prefix{nsVIP4}, "", true},
		{"no subnet", "", []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			var err error
			a.do(t, func() { got, err = vip.ResolveInterface(tc.iface, tc.vips) })
			if tc.wantErr {
				if !errors.Is(err, vip.ErrInterface) || !strings.Contains(err.Error(), "-interface") {
					t.Fatalf("err = %v, want ErrInterface naming -interface", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// A second interface in the same subnet makes the choice ambiguous.
	sh(t, "ip", "-n", a.name, "link", "add", "side0", "type", "veth", "peer", "name", "side1")
	sh(t, "ip", "-n", a.name, "addr", "add", "10.77.0.200/24", "dev", "side0")
	var err error
	a.do(t, func() { _, err = vip.ResolveInterface("", []netip.Prefix{nsVIP4}) })
	if !errors.Is(err, vip.ErrInterface) || !strings.Contains(err.Error(), "side0") {
		t.Fatalf("err = %v, want an ambiguity error naming side0", err)
	}
}

func TestNewLinuxKernelRejectsDownInterface(t *testing.T) {
	l := newLAN(t, 1)
	a := l.nodes[0]
	sh(t, "ip", "-n", a.name, "link", "set", a.ifname, "down")
	var err error
	a.do(t, func() { _, err = vip.NewLinuxKernel(a.ifname, nil) })
	if !errors.Is(err, vip.ErrInterface) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("err = %v, want ErrInterface saying the interface is down", err)
	}
}
