package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr is a backend's address in the kernel's form, parsed once per backend so a dial does no name
// parsing and no allocation for it.
type sockaddr struct {
	family int
	len    uintptr
	raw    [unix.SizeofSockaddrInet6]byte // a RawSockaddrInet4 or RawSockaddrInet6
}

// parseSockaddr returns the sockaddr of an "ip:port" literal, or false for anything else (a host name is
// left to net.Dialer).
func parseSockaddr(addr string) (sockaddr, bool) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr().Zone() != "" {
		return sockaddr{}, false
	}
	var sa sockaddr
	ip, port := ap.Addr(), ap.Port()
	if ip.Is4() || ip.Is4In6() {
		r := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sa.raw))
		r.Family = unix.AF_INET
		r.Addr = ip.Unmap().As4()
		p := (*[2]byte)(unsafe.Pointer(&r.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		sa.family, sa.len = unix.AF_INET, unix.SizeofSockaddrInet4
		return sa, true
	}
	r := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa.raw))
	r.Family = unix.AF_INET6
	r.Addr = ip.As16()
	p := (*[2]byte)(unsafe.Pointer(&r.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	sa.family, sa.len = unix.AF_INET6, unix.SizeofSockaddrInet6
	return sa, true
}

// startConnect opens a socket to be and starts a non-blocking connect; the reactor learns the outcome from
// the socket's first epoll event. Socket options and connect are raw calls; nothing of net.Dialer (resolver,
// getsockname/getpeername of its addresses, bookkeeping) is needed for an IP literal. The loop guard runs
// before the connect and, when only the socket's address can tell, right after it: connect has bound the
// local address by then even when the handshake is still in progress.
func (p *Proxy) startConnect(be *backend) (int, error) {
	verdict, err := p.checkLoopBefore(be)
	if err != nil {
		return -1, err
	}
	fd, err := connectStart(&be.sa)
	if err != nil {
		return -1, fmt.Errorf("dial %s: %w", be.addr, err)
	}
	if verdict == checkAfter {
		if err := p.checkLoopAfter(be, rawGetsockname(fd), be.ap); err != nil {
			rawReset(fd)
			return -1, err
		}
	}
	return fd, nil
}

// connectStart returns a non-blocking socket with TCP_NODELAY whose connect to sa is in progress or done.
// Its keepalive is set later, if the connection lives (keepalive_linux.go).
func connectStart(sa *sockaddr) (int, error) {
	fd, err := rawSocket(sa.family)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// A new socket has Nagle on: a small write that follows one not yet acknowledged (the second record of a
	// TLS flight, a request after its headers) would wait for the peer's delayed ACK, ~40 ms on Linux.
	// net.Dialer sets TCP_NODELAY on every socket; this raw path must too.
	if err := rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		rawClose(fd)
		return -1, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	// On loopback the handshake completes inside this call, yet it reports EINPROGRESS; the socket's first
	// event (writable, already queued when the reactor adds it) says so without another system call.
	switch err := rawConnect(fd, sa); err {
	case nil, unix.EINPROGRESS, unix.EINTR: // EINTR: the connect goes on asynchronously
		return fd, nil
	default:
		rawClose(fd)
		return -1, fmt.Errorf("connect: %w", err)
	}
}

func rawConnect(fd int, sa *sockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), sa.len)
	return errnoErr(e)
}

// dialName connects to a backend given by host name through the settings' net.Dialer (its Control runs
// the loop guard on the resolved address before connecting; the connected socket's address is checked
// after) and returns the connected socket as a raw descriptor for the reactor.
func (p *Proxy) dialName(ctx context.Context, set *settings, be *backend) (int, error) {
	c, err := set.dialer.DialContext(ctx, "tcp", be.addr)
	if err != nil {
		return -1, err
	}
	tc := c.(*net.TCPConn)
	if dst, ok := addrPortOf(tc.RemoteAddr()); ok {
		if v, _ := p.loopBefore(dst); v == checkAfter {
			local, _ := addrPortOf(tc.LocalAddr()) // cached by net: no syscall
			if err := p.checkLoopAfter(be, local, dst); err != nil {
				_ = tc.SetLinger(0)
				_ = tc.Close()
				return -1, err
			}
		}
	}
	return detach(tc)
}

// detach takes a connected socket out of the Go poller for a reactor: it returns a duplicate descriptor
// (sharing the non-blocking open file) and closes tc, which also removes tc's from the Go poller's set.
func detach(tc *net.TCPConn) (int, error) {
	defer func() { _ = tc.Close() }()
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	return dupSocket(rc)
}

// dupSocket returns a close-on-exec duplicate of rc's descriptor: the same open socket (its non-blocking
// flag included), outside the Go poller.
func dupSocket(rc syscall.RawConn) (int, error) {
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, fmt.Errorf("dup socket: %w", derr)
	}
	return fd, nil
}
