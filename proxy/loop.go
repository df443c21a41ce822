package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"
)

// The loop guard. A backend that is one of the proxy's own listening addresses makes every client connection
// loop through the proxy until descriptors run out (issue 10: 243 hops for one connection). The agent refuses
// such a configuration before it listens, since it knows every frontend; this guard is the proxy's own cheap
// backstop, so a loop cannot form even through a host name or an address that became local later:
//
//   - Before connecting, a destination equal to a listening address, or on the port of a wildcard listener
//     and a loopback (or unspecified) address, is refused: no syscall, no packet.
//   - A destination on the port of a wildcard listener and any other address may or may not be this host.
//     After the connect, the socket's local address tells: connecting to one of this host's own addresses,
//     the kernel picks that same address as the source. Then the connection is closed at once and the
//     backend is refused without connecting for loopMemory, which bounds the chain the one connection that
//     reached our own accept queue could start. This costs one getsockname per dial in that case only (listen
//     :6443 with backends on port 6443, the usual layout on dedicated load-balancer nodes).
//
// A refused loop is counted (vipd_proxy_loop_dials_total), logged at most once a minute, and not reported to
// the health source (it is a configuration error, not a sick backend); the connection tries its next backend.

// errLoop: the backend is this proxy's own listener.
var errLoop = errors.New("backend is one of this proxy's own listening addresses (a proxy loop): remove it from the backends")

// loopMemory is how long a backend found to be local after connecting is refused before connecting.
const loopMemory = 5 * time.Second

type loopVerdict int

const (
	notLoop    loopVerdict = iota
	isLoop                 // refuse without connecting
	checkAfter             // connect, then compare the socket's local address with the destination
)

// addListen and removeListen maintain the listening addresses of running Serve calls (copy on write: the
// dial path reads them with one atomic load).
func (p *Proxy) addListen(a netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.listens.Load()
	next := append(slices.Clip(cur), a)
	p.listens.Store(&next)
}

func (p *Proxy) removeListen(a netip.AddrPort) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.listens.Load()
	if i := slices.Index(cur, a); i >= 0 {
		next := slices.Delete(slices.Clone(cur), i, i+1)
		p.listens.Store(&next)
	}
}

// addrPortOf returns a net.Addr's address and port, unmapped.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.IsValid()
}

// loopBefore judges a destination against the listening addresses before connecting.
func (p *Proxy) loopBefore(dst netip.AddrPort) (loopVerdict, netip.AddrPort) {
	verdict, match := notLoop, netip.AddrPort{}
	ip := dst.Addr().Unmap()
	for _, l := range *p.listens.Load() {
		if l.Port() != dst.Port() {
			continue
		}
		la := l.Addr()
		switch {
		case !la.IsUnspecified():
			if la == ip {
				return isLoop, l
			}
		case la.Is4() && !ip.Is4():
			// 0.0.0.0 takes IPv4 only; [::] (Go's ":port") takes both.
		case ip.IsLoopback() || ip.IsUnspecified():
			return isLoop, l
		default:
			verdict, match = checkAfter, l
		}
	}
	return verdict, match
}

// loopError describes a refused loop.
func loopError(dst, listen netip.AddrPort) error {
	return fmt.Errorf("dial %s: %w (listening on %s)", dst, errLoop, listen)
}

// checkLoopBefore refuses be before connecting when it is, or was recently found to be, our own listener.
func (p *Proxy) checkLoopBefore(be *backend) (loopVerdict, error) {
	if !be.hasAP {
		return notLoop, nil // a name: judged in loopControl once resolved
	}
	if until := be.loopUntil.Load(); until != 0 && time.Now().UnixNano() < until {
		return isLoop, fmt.Errorf("dial %s: %w (found local %v ago)", be.addr, errLoop, loopMemory)
	}
	v, l := p.loopBefore(be.ap)
	if v == isLoop {
		return v, loopError(be.ap, l)
	}
	return v, nil
}

// checkLoopAfter reports a loop when the connected socket's local address is the destination address.
func (p *Proxy) checkLoopAfter(be *backend, local, dst netip.AddrPort) error {
	if !local.IsValid() || local.Addr().Unmap() != dst.Addr().Unmap() {
		return nil
	}
	be.loopUntil.Store(time.Now().Add(loopMemory).UnixNano())
	_, l := p.loopBefore(dst)
	return loopError(dst, l)
}

// loopControl is the name-dialer's Control: it judges the resolved address before the connect.
func (p *Proxy) loopControl(_ context.Context, _, address string, _ syscall.RawConn) error {
	dst, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil
	}
	if v, l := p.loopBefore(dst); v == isLoop {
		return loopError(dst, l)
	}
	return nil
}

// loopRefused counts and (rate-limited) logs a refused loop.
func (p *Proxy) loopRefused(be *backend, err error) {
	inc(be.m.loops)
	p.loopLog.Log(p.log, slog.LevelError, "refusing to dial a backend that is this proxy itself", "backend", be.addr, "err", err)
}
