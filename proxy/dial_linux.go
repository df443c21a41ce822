package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"
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

// aLongTimeAgo is a deadline in the past, to wake a parked connect.
var aLongTimeAgo = time.Unix(1, 0)

// connectRaw connects a new socket to sa. It replaces net.Dialer on the hot path: socket, keepalive and
// connect are raw non-blocking calls; the socket becomes an *os.File (registered with the Go poller) only to
// wait for a connect still in progress and, later, for the pumps. It skips what the proxy never uses from a
// net.Conn: the getsockname/getpeername of its addresses, resolver and dial bookkeeping, and their garbage.
// When local is not nil it receives the connected socket's local address (one raw getsockname, for the loop
// guard).
func connectRaw(ctx context.Context, sa *sockaddr, keepAlive, timeout time.Duration, local *netip.AddrPort) (*os.File, error) {
	fd, err := unix.Socket(sa.family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// A new socket has Nagle on: a small write that follows one not yet acknowledged (the second record of a
	// TLS flight, a request after its headers) would wait for the peer's delayed ACK, ~40 ms on Linux.
	// net.Dialer sets TCP_NODELAY on every socket; this raw path must too.
	if err := rawSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("set TCP_NODELAY: %w", err)
	}
	if keepAlive > 0 { // a new socket has keepalive off
		if err := setKeepAlive(fd, keepAlive); err != nil {
			_ = unix.Close(fd)
			return nil, err
		}
	}
	err = rawConnect(fd, sa)
	if err == unix.EINPROGRESS || err == unix.EINTR || err == unix.EALREADY {
		// On loopback and fast LANs the handshake has often completed inside connect: a second connect
		// returns 0 (just connected) or the failure, without parking.
		err = rawConnect(fd, sa)
	}
	inProgress := err == unix.EINPROGRESS || err == unix.EINTR || err == unix.EALREADY
	if err != nil && err != unix.EISCONN && !inProgress {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("connect: %w", err)
	}
	f := os.NewFile(uintptr(fd), "backend")
	if inProgress {
		if err := waitConnected(ctx, f, sa, timeout); err != nil {
			_ = f.Close()
			return nil, err
		}
	}
	if local != nil {
		*local = rawGetsockname(fd) // fd is still f's: nothing else can close it before we return
	}
	return f, nil
}

// waitConnected parks until a connect in progress on f completes, fails, times out or ctx is done.
func waitConnected(ctx context.Context, f *os.File, sa *sockaddr, timeout time.Duration) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	if err := f.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(aLongTimeAgo) })
	defer stop()
	var cerr error
	werr := rc.Write(func(fd uintptr) bool {
		cerr = rawConnect(int(fd), sa)
		switch cerr {
		case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
			return false
		case unix.EISCONN: // connected before this call (0 means: by this call)
			cerr = nil
		}
		return true
	})
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("connect: %w", ctx.Err())
	case errors.Is(werr, os.ErrDeadlineExceeded):
		return fmt.Errorf("connect: timeout after %v", timeout)
	case werr != nil:
		return fmt.Errorf("connect: %w", werr)
	case cerr != nil:
		return fmt.Errorf("connect: %w", cerr)
	}
	return f.SetWriteDeadline(time.Time{})
}

func rawConnect(fd int, sa *sockaddr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.raw)), sa.len)
	return errnoErr(e)
}

// socket is what a conn needs of either end: *net.TCPConn (client, or a backend dialed by name) and
// *os.File (a backend dialed by connectRaw) both qualify.
type socket interface {
	SyscallConn() (syscall.RawConn, error)
	Close() error
}

// setLinger0 makes the next close of s send a reset.
func setLinger0(s socket) {
	rc, err := s.SyscallConn()
	if err != nil {
		return
	}
	l := unix.Linger{Onoff: 1, Linger: 0}
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &l) })
}

// peer logs a socket's remote address. It is a slog.LogValuer so the getpeername runs only when a record
// is actually written (debug logs of refused or failed connections), never on the hot path.
type peer struct{ s socket }

// LogValue returns the remote address as ip:port, or a placeholder when it cannot be read.
func (p peer) LogValue() slog.Value {
	rc, err := p.s.SyscallConn()
	if err != nil {
		return slog.StringValue("?")
	}
	var sa unix.Sockaddr
	if err := rc.Control(func(fd uintptr) { sa, _ = unix.Getpeername(int(fd)) }); err != nil {
		return slog.StringValue("?")
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return slog.StringValue(netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String())
	case *unix.SockaddrInet6:
		return slog.StringValue(netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String())
	}
	return slog.StringValue("?")
}
