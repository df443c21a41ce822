//go:build linux

package vip_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// The connections a drain counts and resets, on the real kernel: a node with both VIPs on lo serves them on
// one wildcard listener, as vipd's proxy does with -listen=:6443, so the IPv4 connection is an IPv6 socket
// with a v4-mapped address (only an AF_INET6 dump lists it). The client sits across the LAN.
func TestLinuxKernelCountsAndResetsVIPFlows(t *testing.T) {
	l := newLAN(t, 1)
	node := l.nodes[0]
	k := kernelIn(t, node)
	ips := []netip.Addr{nsVIP4.Addr(), nsVIP6.Addr()}
	for _, p := range []netip.Prefix{nsVIP4, nsVIP6} {
		if err := k.AddAddr(p); err != nil {
			t.Fatal(err)
		}
	}
	mac := k.HardwareAddr().String()
	for _, ip := range ips {
		sh(t, "ip", "-n", l.client.name, "neigh", "replace", ip.String(), "lladdr", mac, "dev", "br0", "nud", "permanent")
	}

	var ln net.Listener
	var err error
	node.do(t, func() { ln, err = net.Listen("tcp", ":6443") })
	if err != nil {
		t.Fatalf("listen in %s: %v", node.name, err)
	}
	served := make(chan net.Conn, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			served <- c
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	ports := []uint16{6443}

	dialBoth := func() (clients, servers []net.Conn) {
		for _, ip := range ips {
			var c net.Conn
			l.client.do(t, func() { c, err = net.DialTimeout("tcp", netip.AddrPortFrom(ip, 6443).String(), 5*time.Second) })
			if err != nil {
				t.Fatalf("dial %s: %v", ip, err)
			}
			t.Cleanup(func() { c.Close() })
			clients = append(clients, c)
			select {
			case s := <-served:
				t.Cleanup(func() { s.Close() })
				servers = append(servers, s)
			case <-time.After(5 * time.Second):
				t.Fatalf("no connection accepted for %s", ip)
			}
		}
		return clients, servers
	}
	count := func(deadAfter time.Duration) int {
		n, err := k.Established(ips, ports, deadAfter)
		if err != nil {
			t.Fatalf("Established: %v", err)
		}
		return n
	}

	clients, _ := dialBoth()
	if n := count(0); n != 2 {
		t.Fatalf("Established = %d, want 2 (one IPv4 through the wildcard listener, one IPv6)", n)
	}
	if n := count(50 * time.Millisecond); n != 2 {
		t.Fatalf("Established(deadAfter) = %d, want 2: idle connections with nothing unacknowledged are alive", n)
	}
	if n, err := k.Established(ips, []uint16{6444}, 0); err != nil || n != 0 {
		t.Fatalf("Established on another port = %d, %v; want 0", n, err)
	}
	n, err := k.Reset(ips, ports)
	if err != nil || n != 2 {
		t.Fatalf("Reset = %d, %v; want 2", n, err)
	}
	for i, c := range clients {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client %d after Reset: read %v, want a connection reset", i, err)
		}
	}
	if n := count(0); n != 0 {
		t.Fatalf("Established after Reset = %d, want 0", n)
	}

	// Dead: the client's side goes quiet (its bridge down), the server sends; nothing is acknowledged.
	_, servers := dialBoth()
	sh(t, "ip", "-n", l.client.name, "link", "set", "br0", "down")
	for _, s := range servers {
		if _, err := s.Write(make([]byte, 4096)); err != nil {
			t.Fatalf("server write: %v", err)
		}
	}
	if n := count(time.Minute); n != 2 {
		t.Fatalf("Established(1m) right after the writes = %d, want 2", n)
	}
	testutil.WaitFor(t, 10*time.Second, "both silent connections reset as dead", func() bool { return count(300*time.Millisecond) == 0 })
	for i, s := range servers {
		_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := s.Read(make([]byte, 1)); err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("server %d after the dead reset: read %v, want the connection aborted", i, err)
		}
	}
}
