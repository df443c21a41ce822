package proxy

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// rawAccepter accepts client sockets with a raw accept4 on a TCP listener's descriptor, inside a
// RawConn.Read, so the accept loop still parks in the Go poller while no connect is pending. A listener's
// own RawConn refuses Read, so it works on a duplicate of the listening socket (TCPListener.File, still
// non-blocking); the listening socket stays open until both the listener and the duplicate are closed.
//
// net.TCPListener.Accept makes accept4 and a setsockopt(TCP_NODELAY) as scheduler-notified system calls,
// calls getsockname, and allocates a netFD with two TCPAddrs the proxy never reads. A notified call wakes
// the runtime's sysmon thread whenever the process had gone idle, which at 1k conn/s is once per connection
// (two context switches on the proxy's core). Here the accepted descriptor goes straight into an *os.File
// (a raw fcntl and the poller registration); TCP_NODELAY and keepalive are inherited from a Listen
// listener, or set raw by Serve otherwise.
type rawAccepter struct {
	f        *os.File // the duplicate listening socket
	rc       syscall.RawConn
	acceptFn func(fd uintptr) bool
	fd       int   // result of the last callback
	err      error // error of the last callback
}

// newRawAccepter returns an accepter for ln, or false when ln is not a plain TCP listener or is closed
// (Serve then falls back to ln.Accept). The caller closes it (as well as ln) to stop accepting.
func newRawAccepter(ln net.Listener) (*rawAccepter, bool) {
	var tl *net.TCPListener
	switch l := ln.(type) {
	case listener:
		tl = l.TCPListener
	case *net.TCPListener:
		tl = l
	default:
		return nil, false
	}
	f, err := tl.File()
	if err != nil {
		return nil, false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, false
	}
	a := &rawAccepter{f: f, rc: rc}
	a.acceptFn = a.onReadable
	return a, true
}

// accept waits for and returns the next client socket. Errors wrap the errno (errors.Is works against
// syscall.EMFILE and the like); after close the error wraps net.ErrClosed.
func (a *rawAccepter) accept() (*os.File, error) {
	a.fd, a.err = -1, nil
	if err := a.rc.Read(a.acceptFn); err != nil {
		return nil, fmt.Errorf("%w: %w", net.ErrClosed, err) // no deadline is ever set: only close ends a wait
	}
	if a.err != nil {
		return nil, a.err
	}
	return os.NewFile(uintptr(a.fd), "client"), nil
}

// close closes the duplicate listening socket; a parked accept returns.
func (a *rawAccepter) close() { _ = a.f.Close() }

func (a *rawAccepter) onReadable(fd uintptr) bool {
	for {
		r, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, 0, 0, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			a.fd = int(r)
			return true
		case unix.EINTR, unix.ECONNABORTED: // a client that reset before we got to it: take the next
			continue
		case unix.EAGAIN:
			return false // nothing pending: park on the listener
		default:
			a.err = os.NewSyscallError("accept4", e)
			return true
		}
	}
}
