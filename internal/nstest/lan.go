package nstest

import (
	"fmt"
	"net"
	"testing"
)

// LAN is one layer-2 segment: a bridge in a namespace of its own, into which Attach plugs other namespaces.
// The bridge forwards everything (no multicast snooping), as a plain switch would.
type LAN struct {
	br    *NS
	ports int
}

// NewLAN creates the bridge; t.Cleanup removes it with its namespace.
func NewLAN(t testing.TB) *LAN {
	t.Helper()
	br := New(t, "br")
	br.MustRun(t, "ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	br.MustRun(t, "ip", "link", "set", "br0", "up")
	return &LAN{br: br}
}

// Attach plugs n into the bridge through a veth whose end in n is called ifname, gives it the addresses
// (CIDR, e.g. 10.214.0.11/24) and brings it up; it returns the interface as n sees it.
func (l *LAN) Attach(t testing.TB, n *NS, ifname string, addrs ...string) *net.Interface {
	t.Helper()
	l.ports++
	port := fmt.Sprintf("p%d", l.ports)
	l.br.MustRun(t, "ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", n.Name)
	l.br.MustRun(t, "ip", "link", "set", port, "master", "br0", "up")
	for _, a := range addrs {
		n.MustRun(t, "ip", "addr", "add", a, "dev", ifname)
	}
	n.MustRun(t, "ip", "link", "set", ifname, "up")
	return n.Interface(t, ifname)
}

// Host creates a namespace for role and attaches it with ifname and addrs.
func (l *LAN) Host(t testing.TB, role, ifname string, addrs ...string) (*NS, *net.Interface) {
	t.Helper()
	n := New(t, role)
	return n, l.Attach(t, n, ifname, addrs...)
}
