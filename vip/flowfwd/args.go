package flowfwd

import (
	"fmt"
	"net/netip"
	"slices"
)

// selector is a normalised choice of frontends: every VIP (unmapped, deduplicated, sorted) on every port
// (deduplicated, sorted), so that two calls with the same frontends in another order compare equal.
type selector struct {
	vips  []netip.Addr
	ports []uint16
}

// newSelector validates and normalises the VIPs and ports given to op ("Mark" or "Forward").
func newSelector(op string, vips []netip.Addr, ports []uint16) (selector, error) {
	if len(vips) == 0 {
		return selector{}, fmt.Errorf("%w: %s: vips is empty: pass the VIPs whose frontends to cover", ErrInvalidArgument, op)
	}
	if len(ports) == 0 {
		return selector{}, fmt.Errorf("%w: %s: ports is empty: pass the frontend ports the proxy listens on", ErrInvalidArgument, op)
	}
	var s selector
	for i, v := range vips {
		v = v.Unmap()
		switch {
		case !v.IsValid():
			return selector{}, fmt.Errorf("%w: %s: vips[%d] is the zero netip.Addr: pass a VIP address", ErrInvalidArgument, op, i)
		case v.Zone() != "":
			return selector{}, fmt.Errorf("%w: %s: vips[%d] %s has a zone: a VIP is a global address, pass it without %%%s",
				ErrInvalidArgument, op, i, v, v.Zone())
		case v.IsUnspecified() || v.IsMulticast() || v.IsLoopback():
			return selector{}, fmt.Errorf("%w: %s: vips[%d] %s is not a unicast address a VIP can be", ErrInvalidArgument, op, i, v)
		}
		s.vips = append(s.vips, v)
	}
	for i, p := range ports {
		if p == 0 {
			return selector{}, fmt.Errorf("%w: %s: ports[%d] is 0: pass the frontend's listening port (1-65535)", ErrInvalidArgument, op, i)
		}
		s.ports = append(s.ports, p)
	}
	slices.SortFunc(s.vips, netip.Addr.Compare)
	s.vips = slices.Compact(s.vips)
	slices.Sort(s.ports)
	s.ports = slices.Compact(s.ports)
	return s, nil
}

// of returns the part of s in one address family (nil VIPs if s has none there).
func (s selector) of(is4 bool) selector {
	var out selector
	for _, v := range s.vips {
		if v.Is4() == is4 {
			out.vips = append(out.vips, v)
		}
	}
	if len(out.vips) > 0 {
		out.ports = s.ports
	}
	return out
}

func (s selector) empty() bool { return len(s.vips) == 0 }

func (s selector) equal(o selector) bool {
	return slices.Equal(s.vips, o.vips) && slices.Equal(s.ports, o.ports)
}

// target is where one address family's unknown flows go: the draining peer, reached over iface.
type target struct {
	peer  netip.Addr
	iface string
	index int // iface's index, resolved when Forward is called
	sel   selector
}

func (t *target) equal(o *target) bool {
	if t == nil || o == nil {
		return t == o
	}
	return t.peer == o.peer && t.iface == o.iface && t.index == o.index && t.sel.equal(o.sel)
}

// checkForward validates Forward's arguments except what needs the kernel (the interface and the node's own
// addresses) and returns the normalised target without its interface index.
func checkForward(peer netip.Addr, iface string, vips []netip.Addr, ports []uint16) (*target, error) {
	sel, err := newSelector("Forward", vips, ports)
	if err != nil {
		return nil, err
	}
	if iface == "" {
		return nil, fmt.Errorf("%w: Forward: iface is empty: pass the interface on which the draining peer is a neighbour",
			ErrInvalidArgument)
	}
	peer = peer.Unmap()
	switch {
	case !peer.IsValid():
		return nil, fmt.Errorf("%w: Forward: peer is the zero netip.Addr: pass the draining node's address on %s",
			ErrInvalidArgument, iface)
	case peer.IsUnspecified() || peer.IsMulticast() || peer.IsLoopback():
		return nil, fmt.Errorf("%w: Forward: peer %s is not a unicast address: pass the draining node's address on %s",
			ErrInvalidArgument, peer, iface)
	case peer.Zone() != "" && peer.Zone() != iface:
		return nil, fmt.Errorf("%w: Forward: peer %s is scoped to %s, not to iface %s", ErrInvalidArgument, peer, peer.Zone(), iface)
	}
	peer = peer.WithZone("") // iface is the scope
	for _, v := range sel.vips {
		if v == peer {
			return nil, fmt.Errorf("%w: Forward: peer %s is one of the vips: pass the draining node's own address, not the VIP",
				ErrInvalidArgument, peer)
		}
		if v.Is4() != peer.Is4() {
			return nil, fmt.Errorf("%w: Forward: vips contains %s but peer %s is of the other address family: "+
				"call Forward once per family, each with the peer's address in that family", ErrInvalidArgument, v, peer)
		}
	}
	return &target{peer: peer, iface: iface, sel: sel}, nil
}
