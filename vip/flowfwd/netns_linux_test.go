//go:build linux

package flowfwd_test

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
	"golang.org/x/sys/unix"
)

// Throw-away network namespaces. Code runs "inside" one on a goroutine whose OS thread is locked and
// switched into it; the thread is never unlocked, so the runtime discards it when the goroutine ends.
// Sockets keep the namespace they were opened in, so a listener or connection made inside can be used
// from any goroutine afterwards.

var nsCounter atomic.Int64

type ns struct {
	name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

func requireNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newNS(t testing.TB, role string) *ns {
	t.Helper()
	name := fmt.Sprintf("ffwd-%d-%d-%s", os.Getpid(), nsCounter.Add(1), role)
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
	return &ns{name: name, handle: h, nl: nl}
}

// do runs f inside the namespace and waits for it.
func (n *ns) do(t testing.TB, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		if err := netns.Set(n.handle); err != nil {
			t.Errorf("enter netns %s: %v", n.name, err)
			return
		}
		f()
	}()
	<-done
}

// sysctl writes /proc/sys/<key> (key with dots) inside the namespace.
func (n *ns) sysctl(t testing.TB, key, value string) {
	t.Helper()
	var err error
	n.do(t, func() {
		err = os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0)
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s in %s: %v", key, value, n.name, err)
	}
}

func (n *ns) readSysctl(t testing.TB, key string) string {
	t.Helper()
	var b []byte
	var err error
	n.do(t, func() { b, err = os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/")) })
	if err != nil {
		t.Fatalf("read sysctl %s in %s: %v", key, n.name, err)
	}
	return strings.TrimSpace(string(b))
}

func (n *ns) link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, n.name, err)
	}
	return l
}

// addLo puts ip on lo as a host prefix, as vip.LinuxKernel does with a VIP.
func (n *ns) addLo(t testing.TB, ip netip.Addr) {
	t.Helper()
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if !ip.Is4() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := n.nl.AddrAdd(n.link(t, "lo"), a); err != nil {
		t.Fatalf("add %s to lo in %s: %v", ip, n.name, err)
	}
}

// Addresses of the test LAN: a client namespace holding the bridge, and node namespaces plugged into it
// with a veth each ("eth<i>": names differ between namespaces because Go's net package caches interface
// names process-wide).
var (
	clientV4 = netip.MustParseAddr("10.78.0.100")
	clientV6 = netip.MustParseAddr("fd78::100")
	vipV4    = netip.MustParseAddr("10.78.0.50")
	vipV6    = netip.MustParseAddr("fd78::50")
)

func nodeAddr(i int, is4 bool) netip.Addr {
	if is4 {
		return netip.AddrFrom4([4]byte{10, 78, 0, byte(i)})
	}
	return netip.MustParseAddr(fmt.Sprintf("fd78::%d", i))
}

type node struct {
	*ns
	ifname string
	mac    net.HardwareAddr
	index  int // 1-based, as in its addresses
}

func (n *node) addr(is4 bool) netip.Addr { return nodeAddr(n.index, is4) }

type lan struct {
	client *ns
	nodes  []*node
}

// newLAN builds the client namespace with bridge br0 and count node namespaces, each a load-balancer node as
// vipd runs it: ip_forward off, arp_ignore=1 on its interface (a VIP on lo is never answered by the kernel).
func newLAN(t testing.TB, count int) *lan {
	t.Helper()
	requireNetns(t)
	c := newNS(t, "c")
	l := &lan{client: c}
	run(t, "ip", "-n", c.name, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	c.sysctl(t, "net.ipv6.conf.br0.accept_dad", "0")
	run(t, "ip", "-n", c.name, "addr", "add", clientV4.String()+"/24", "dev", "br0")
	run(t, "ip", "-n", c.name, "addr", "add", clientV6.String()+"/64", "dev", "br0", "nodad")
	run(t, "ip", "-n", c.name, "link", "set", "br0", "up")
	run(t, "ip", "-n", c.name, "link", "set", "lo", "up")
	for i := 1; i <= count; i++ {
		n := &node{ns: newNS(t, fmt.Sprintf("n%d", i)), ifname: fmt.Sprintf("eth%d", i), index: i}
		port := fmt.Sprintf("v%d", i)
		run(t, "ip", "-n", c.name, "link", "add", port, "type", "veth", "peer", "name", n.ifname, "netns", n.name)
		run(t, "ip", "-n", c.name, "link", "set", port, "master", "br0", "up")
		n.sysctl(t, "net.ipv6.conf."+n.ifname+".accept_dad", "0")
		n.sysctl(t, "net.ipv4.ip_forward", "0")
		n.sysctl(t, "net.ipv6.conf.all.forwarding", "0")
		n.sysctl(t, "net.ipv4.conf.all.arp_ignore", "1")
		n.sysctl(t, "net.ipv4.conf."+n.ifname+".arp_ignore", "1")
		run(t, "ip", "-n", n.name, "addr", "add", n.addr(true).String()+"/24", "dev", n.ifname)
		run(t, "ip", "-n", n.name, "addr", "add", n.addr(false).String()+"/64", "dev", n.ifname, "nodad")
		run(t, "ip", "-n", n.name, "link", "set", n.ifname, "up")
		run(t, "ip", "-n", n.name, "link", "set", "lo", "up")
		n.mac = n.link(t, n.ifname).Attrs().HardwareAddr
		l.nodes = append(l.nodes, n)
	}
	return l
}

// pointVIP makes the client send traffic for vip to n's MAC, as a gratuitous ARP / unsolicited NA from n
// would (vip's tests cover those; here the move must be exact and instant).
func (l *lan) pointVIP(t testing.TB, vip netip.Addr, n *node) {
	t.Helper()
	family := netlink.FAMILY_V6
	if vip.Is4() {
		family = netlink.FAMILY_V4
	}
	err := l.client.nl.NeighSet(&netlink.Neigh{
		LinkIndex:    l.client.link(t, "br0").Attrs().Index,
		Family:       family,
		State:        netlink.NUD_PERMANENT,
		IP:           vip.AsSlice(),
		HardwareAddr: n.mac,
	})
	if err != nil {
		t.Fatalf("client: neighbour %s -> %s: %v", vip, n.mac, err)
	}
}
