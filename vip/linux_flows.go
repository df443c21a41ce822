//go:build linux

package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// This file counts and resets the TCP connections through the VIP (netlink sock_diag), for hand-over drains.
// A connection is found by its local end: the VIP and a frontend port. A listener on the wildcard address
// (the usual -listen=:6443) is an IPv6 socket, and its IPv4 connections are IPv6 sockets with v4-mapped
// addresses that only an AF_INET6 dump lists: every VIP family is looked up there too.

// Established counts the TCP connections of this host whose local end is one of ips on one of ports and
// that still carry data one way or the other. With deadAfter > 0, a connection that has waited that long for
// its client to acknowledge anything (data, a window probe or a keepalive probe unanswered) is dead: it is
// reset, not counted.
func (k *LinuxKernel) Established(ips []netip.Addr, ports []uint16, deadAfter time.Duration) (int, error) {
	kept, _, err := k.resetFlowsIf(ips, ports, func(f flow) bool { return deadAfter > 0 && f.dead(deadAfter) })
	return kept, err
}

// Reset resets every TCP connection of this host whose local end is one of ips on one of ports, and
// returns how many it reset.
func (k *LinuxKernel) Reset(ips []netip.Addr, ports []uint16) (int, error) {
	_, reset, err := k.resetFlowsIf(ips, ports, func(flow) bool { return true })
	return reset, err
}

// resetFlowsIf resets the connections through the VIP that doomed says are, and counts the others (kept)
// and those it reset. A connection it could not reset counts as kept; one gone since the dump, as neither.
func (k *LinuxKernel) resetFlowsIf(ips []netip.Addr, ports []uint16, doomed func(flow) bool) (kept, reset int, err error) {
	flows, err := k.vipFlows(ips, ports)
	if err != nil {
		return 0, 0, err
	}
	var errs []error
	for _, f := range flows {
		if !doomed(f) {
			kept++
			continue
		}
		switch err := k.destroy(f.sock); {
		case err == nil:
			reset++
		case !errors.Is(err, unix.ENOENT): // ENOENT: it closed since the dump
			errs = append(errs, err)
			kept++
		}
	}
	return kept, reset, errors.Join(errs...)
}

// flow is one TCP connection through the VIP.
type flow struct {
	sock *netlink.Socket
	info *netlink.TCPInfo // nil if the kernel sent none
}

// dead reports a connection whose client has acknowledged nothing for at least after while this end waits
// for it: unacknowledged data, or probes (zero-window or keepalive) unanswered.
func (f flow) dead(after time.Duration) bool {
	ti := f.info
	if ti == nil || (ti.Unacked == 0 && ti.Probes == 0 && ti.Backoff == 0) {
		return false
	}
	return time.Duration(ti.Last_ack_recv)*time.Millisecond >= after
}

// vipFlows lists the connections in an open state whose local end is one of ips on one of ports.
func (k *LinuxKernel) vipFlows(ips []netip.Addr, ports []uint16) ([]flow, error) {
	if len(ips) == 0 {
		return nil, nil
	}
	families := []uint8{unix.AF_INET6} // v6 VIPs, and v4 ones reached through a wildcard listener
	if slices.ContainsFunc(ips, netip.Addr.Is4) {
		families = append(families, unix.AF_INET)
	}
	var out []flow
	for _, family := range families {
		k.mu.Lock()
		socks, err := k.nl.SocketDiagTCPInfo(family)
		k.mu.Unlock()
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("list TCP sockets: %w", err)
		}
		for _, s := range socks {
			m := s.InetDiagMsg
			if m == nil || !openState(m.State) || !slices.Contains(ports, m.ID.SourcePort) {
				continue
			}
			if src, ok := netip.AddrFromSlice(m.ID.Source); ok && slices.Contains(ips, src.Unmap()) {
				out = append(out, flow{sock: m, info: s.TCPInfo})
			}
		}
	}
	return out, nil
}

// openState reports a TCP state in which the connection still moves data (ESTABLISHED, and the half-closed
// ones whose other direction may still be open).
func openState(st uint8) bool {
	switch st {
	case netlink.TCP_ESTABLISHED, netlink.TCP_FIN_WAIT1, netlink.TCP_FIN_WAIT2, netlink.TCP_CLOSE_WAIT:
		return true
	}
	return false
}

// destroy resets one connection (SOCK_DESTROY; the kernel sends the client a RST and the owning process
// reads ECONNABORTED). It goes through the sock_diag socket opened in NewLinuxKernel, in this kernel's
// network namespace; netlink.Handle.SocketDestroy would open one in the calling thread's and knows IPv4 only.
func (k *LinuxKernel) destroy(s *netlink.Socket) error {
	req := nl.NewNetlinkRequest(nl.SOCK_DESTROY, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_INET_DIAG: {Socket: k.diag}}
	req.AddData(destroyRequest{family: s.Family, id: s.ID})
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, err := req.Execute(unix.NETLINK_INET_DIAG, 0); err != nil {
		return fmt.Errorf("reset TCP connection %s:%d-%s:%d: %w", s.ID.Source, s.ID.SourcePort,
			s.ID.Destination, s.ID.DestinationPort, err)
	}
	return nil
}

// destroyRequest is struct inet_diag_req_v2 naming one socket exactly (its cookie included).
type destroyRequest struct {
	family uint8
	id     netlink.SocketID
}

const sizeofInetDiagReqV2 = 56

func (r destroyRequest) Len() int { return sizeofInetDiagReqV2 }

func (r destroyRequest) Serialize() []byte {
	b := make([]byte, sizeofInetDiagReqV2)
	b[0], b[1] = r.family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], 0xfff) // every state
	binary.BigEndian.PutUint16(b[8:], r.id.SourcePort)
	binary.BigEndian.PutUint16(b[10:], r.id.DestinationPort)
	if r.family == unix.AF_INET {
		copy(b[12:28], r.id.Source.To4())
		copy(b[28:44], r.id.Destination.To4())
	} else {
		copy(b[12:28], r.id.Source.To16())
		copy(b[28:44], r.id.Destination.To16())
	}
	binary.NativeEndian.PutUint32(b[44:], r.id.Interface)
	binary.NativeEndian.PutUint32(b[48:], r.id.Cookie[0])
	binary.NativeEndian.PutUint32(b[52:], r.id.Cookie[1])
	return b
}
