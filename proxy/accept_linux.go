package proxy

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/localerr"
)

// Accepting comes first, dialing after, each bounded per round. A connection costs about 3 µs to accept and
// ten times that to connect and serve, so a reactor that dialed every connection as it accepted it would
// empty the kernel's listen queue no faster than it serves: in a reconnect storm (8,000 clients within
// 100 ms after a VIP move) the queue overflows, the kernel drops SYNs, and each dropped client retries one
// second later. Instead the accepting reactor takes up to acceptBatch connections per round out of the
// kernel's queue into its reactors' own FIFOs (newConns), and each reactor dials at most dialsPerRound of
// them per round before it moves bytes again. The kernel queue then only holds what arrives within one
// round, and the connections wait in user space, in order, at 4 bytes each. The listening socket is
// level-triggered, so what a batch leaves is reported again the next round. See CheckSomaxconn for the
// queue's size.
const (
	acceptBatch   = 1024
	dialsPerRound = 64
)

// acceptor is the listening socket in one reactor's epoll set: a duplicate of the listener's descriptor
// (the socket stays open until both are closed), accepted from with raw accept4. Accepting this way skips
// what net.TCPListener.Accept does for every connection and the proxy never uses: a notified accept4 and
// setsockopt(TCP_NODELAY), getsockname, a netFD with two TCPAddrs, the Go poller registration. TCP_NODELAY
// and keepalive are inherited from a Listen listener, or set raw once the backend is connected.
type acceptor struct {
	fd          int
	addr        string        // for errors and logs
	backoff     time.Duration // after a resource error; 0 while accepts succeed
	pausedUntil int64         // unix nanos: out of the set until then, after a resource error
}

// dupListener returns a duplicate of ln's listening socket for a reactor, or false when ln is not a plain
// TCP listener or is closed (Serve then accepts through ln.Accept).
func dupListener(ln net.Listener) (int, bool) {
	var tl *net.TCPListener
	switch l := ln.(type) {
	case listener:
		tl = l.TCPListener
	case *net.TCPListener:
		tl = l
	default:
		return -1, false
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return -1, false
	}
	fd, err := dupSocket(rc)
	return fd, err == nil
}

// listen makes r the accepting reactor for the listening socket fd.
func (r *reactor) listen(fd int, addr string) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tokenListen} // level-triggered: see acceptBatch
	if err := rawEpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl listener: %w", err)
	}
	r.acc = &acceptor{fd: fd, addr: addr}
	return nil
}

// accept takes up to acceptBatch pending connections and queues each on a reactor.
func (r *reactor) accept() {
	a := r.acc
	if a.pausedUntil != 0 {
		return
	}
	for range acceptBatch {
		fd, e := rawAccept(a.fd)
		switch e {
		case 0:
			a.backoff = 0
			r.s.admit(r, fd)
			continue
		case unix.EINTR, unix.ECONNABORTED: // a client that reset before we got to it: take the next
			continue
		case unix.EAGAIN:
			return
		}
		err := fmt.Errorf("accept on %s: %w", a.addr, os.NewSyscallError("accept4", e))
		if temporary(err) {
			r.pauseAccept(err)
			return
		}
		r.stopAccept()
		r.s.acceptFailed(err)
		return
	}
}

// pauseAccept takes the listening socket out of the set for a back-off after a resource error (out of
// descriptors or memory: closing connections relieves it), so the level-triggered socket does not spin.
func (r *reactor) pauseAccept(err error) {
	a := r.acc
	a.backoff = min(max(2*a.backoff, 5*time.Millisecond), time.Second)
	a.pausedUntil = time.Now().Add(a.backoff).UnixNano()
	ev := unix.EpollEvent{Fd: tokenListen}
	_ = rawEpollCtl(r.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
	if errno, ok := localerr.Errno(err); ok {
		r.p.localError(opAccept, errno, err, "listener", a.addr, "backoff", a.backoff)
	} else {
		r.p.log.Warn("accept failed; backing off", "err", err, "backoff", a.backoff)
	}
}

func (r *reactor) resumeAccept() {
	a := r.acc
	a.pausedUntil = 0
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: tokenListen}
	_ = rawEpollCtl(r.epfd, unix.EPOLL_CTL_MOD, a.fd, &ev)
}

// stopAccept closes r's listening socket. The listener itself is closed by Serve.
func (r *reactor) stopAccept() {
	if a := r.acc; a != nil {
		// Explicitly out of the set: the listener's own descriptor keeps the socket open, so closing ours
		// alone would leave it registered.
		_ = rawEpollCtl(r.epfd, unix.EPOLL_CTL_DEL, a.fd, &unix.EpollEvent{})
		rawClose(a.fd)
		r.acc = nil
	}
}

// temporary reports accept errors worth retrying: resource exhaustion that closing connections relieves.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// acceptLoop accepts through ln.Accept, for listeners Serve cannot see through (a wrapper around a TCP
// listener), and hands each connection's socket to a reactor. It returns when ln is closed.
func (s *server) acceptLoop() {
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.stopAccepting:
				return
			default:
			}
			if !temporary(err) {
				s.acceptFailed(fmt.Errorf("accept on %s: %w", s.ln.Addr(), err))
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if errno, ok := localerr.Errno(err); ok {
				s.p.localError(opAccept, errno, err, "listener", s.ln.Addr().String(), "backoff", backoff)
			} else {
				s.p.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-s.stopAccepting:
				return
			}
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			s.p.log.Error("proxy needs a TCP listener; closing connection", "type", fmt.Sprintf("%T", c))
			_ = c.Close()
			continue
		}
		fd, err := detach(tc)
		if err != nil {
			if errno, ok := localerr.Errno(err); ok {
				s.p.localError(opAccept, errno, err, "listener", s.ln.Addr().String())
			}
			continue
		}
		s.admit(nil, fd)
	}
}
