//go:build linux

package vip_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Helpers for tests of the real kernel code in throw-away network namespaces. Code runs "inside" a
// namespace on a goroutine whose OS thread is locked and switched into it; the thread is never
// unlocked, so the runtime discards it when the goroutine ends and no other goroutine inherits it.

var nsCounter atomic.Int64

type testNS struct {
	name   string
	ifname string // the node's interface on the LAN
	ns     netns.NsHandle
	nl     *netlink.Handle
}

// requireNetns skips the test unless it can create network namespaces.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNS(t *testing.T, role string) *testNS {
	t.Helper()
	name := fmt.Sprintf("vipt-%d-%d-%s", os.Getpid(), nsCounter.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { h.Close() })
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink in %s: %v", name, err)
	}
	t.Cleanup(nl.Close)
	return &testNS{name: name, ns: h, nl: nl}
}

// start runs f inside the namespace on a fresh goroutine and returns a channel closed when f returns.
func (n *testNS) start(t *testing.T, f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := netns.Set(n.ns); err != nil {
			t.Errorf("enter netns %s: %v", n.name, err)
			return
		}
		f()
	}()
	return done
}

// do runs f inside the namespace and waits for it.
func (n *testNS) do(t *testing.T, f func()) {
	t.Helper()
	<-n.start(t, f)
}

func (n *testNS) sysctl(t *testing.T, kv string) {
	t.Helper()
	sh(t, "ip", "netns", "exec", n.name, "sysctl", "-qw", kv)
}

// lan is a client namespace with a bridge and node namespaces each plugged into it with an "eth<i>":
// client 10.77.0.100/24 and fd77::100/64, node i 10.77.0.i/24 and fd77::i/64. Interface names differ
// between namespaces because Go's net package caches zone (interface name) to index process-wide.
type lan struct {
	client *testNS
	nodes  []*testNS
}

func newLAN(t *testing.T, nodes int) *lan {
	t.Helper()
	requireNetns(t)
	if _, err := exec.LookPath("sysctl"); err != nil {
		t.Skip("needs the sysctl command (procps)")
	}
	c := newNS(t, "c")
	l := &lan{client: c}
	sh(t, "ip", "-n", c.name, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	c.sysctl(t, "net.ipv6.conf.br0.accept_dad=0")
	sh(t, "ip", "-n", c.name, "addr", "add", "10.77.0.100/24", "dev", "br0")
	sh(t, "ip", "-n", c.name, "addr", "add", "fd77::100/64", "dev", "br0", "nodad")
	sh(t, "ip", "-n", c.name, "link", "set", "br0", "up")
	sh(t, "ip", "-n", c.name, "link", "set", "lo", "up")
	for i := 1; i <= nodes; i++ {
		n := newNS(t, fmt.Sprintf("n%d", i))
		port := fmt.Sprintf("v%d", i)
		n.ifname = fmt.Sprintf("eth%d", i)
		sh(t, "ip", "-n", c.name, "link", "add", port, "type", "veth", "peer", "name", n.ifname, "netns", n.name)
		sh(t, "ip", "-n", c.name, "link", "set", port, "master", "br0", "up")
		n.sysctl(t, "net.ipv6.conf."+n.ifname+".accept_dad=0")
		sh(t, "ip", "-n", n.name, "addr", "add", fmt.Sprintf("10.77.0.%d/24", i), "dev", n.ifname)
		sh(t, "ip", "-n", n.name, "addr", "add", fmt.Sprintf("fd77::%d/64", i), "dev", n.ifname, "nodad")
		sh(t, "ip", "-n", n.name, "link", "set", n.ifname, "up")
		sh(t, "ip", "-n", n.name, "link", "set", "lo", "up")
		l.nodes = append(l.nodes, n)
	}
	return l
}

// neighbour returns the client's neighbour-cache MAC for ip on br0 ("" if none or unresolved).
func (l *lan) neighbour(t *testing.T, ip netip.Addr) string {
	t.Helper()
	br, err := l.client.nl.LinkByName("br0")
	if err != nil {
		t.Fatalf("br0: %v", err)
	}
	family := netlink.FAMILY_V6
	if ip.Is4() {
		family = netlink.FAMILY_V4
	}
	neighs, err := l.client.nl.NeighList(br.Attrs().Index, family)
	if err != nil {
		t.Fatalf("neighbours: %v", err)
	}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) > 0 {
			return n.HardwareAddr.String()
		}
	}
	return ""
}

// poke makes the client's kernel resolve ip by sending it one UDP datagram (discard port).
func (l *lan) poke(t *testing.T, ip netip.Addr) {
	t.Helper()
	l.client.do(t, func() {
		c, err := net.Dial("udp", netip.AddrPortFrom(ip, 9).String())
		if err != nil {
			t.Errorf("dial %s: %v", ip, err)
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("vipd-test"))
	})
}
