package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The reconnect storm: what a VIP move does to the new holder. n clients connect within window (paced
// evenly), each sends a 32-byte request as soon as it is connected and keeps the connection once the 64-byte
// answer is in. The clients are raw non-blocking sockets in one epoll set, driven by one goroutine that
// sleeps in the Go poller between batches: net.Dial per client would cost the load generator's single CPU
// more than the proxy under test, and stretch the storm.

// stormResult is what the clients saw.
type stormResult struct {
	clients, answered  int
	refused, failed    int           // reset or refused; no answer within the timeout or another error
	slowConnects       int           // connects that took a second or more: a SYN was dropped and sent again
	window, all        time.Duration // first connect to the last one issued; to the last answer
	p50, p99, worstOne time.Duration // per client, its connect to its answer
}

type stormClient struct {
	fd                  int
	start, connected    time.Time
	got                 int
	done                bool
	answered, refusedBy bool
	latency             time.Duration
}

func storm(ctx context.Context, addr string, n int, window, timeout time.Duration) (stormResult, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return stormResult{}, fmt.Errorf("storm needs an IPv4 address: %q", addr)
	}
	var sa unix.RawSockaddrInet4
	sa.Family = unix.AF_INET
	sa.Addr = ap.Addr().As4()
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))
	port[0], port[1] = byte(ap.Port()>>8), byte(ap.Port())

	ep, err := newEpollWaiter()
	if err != nil {
		return stormResult{}, err
	}
	defer ep.close()
	clients := make([]stormClient, n)
	defer func() {
		for i := range clients {
			if clients[i].fd > 0 {
				unix.Close(clients[i].fd)
			}
		}
	}()
	// Sockets first, so that the storm itself is only connects.
	for i := range clients {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return stormResult{}, fmt.Errorf("client socket %d of %d: %w", i, n, err)
		}
		clients[i].fd = fd
	}
	var req [requestSize]byte
	req[0] = modeKeep
	var buf [2 * replySize]byte
	res := stormResult{clients: n}
	finished := 0
	finish := func(c *stormClient, answered bool, refused bool) {
		if c.done {
			return
		}
		c.done, c.answered, c.refusedBy = true, answered, refused
		finished++
	}

	t0 := time.Now()
	next := 0
	var lastConnect time.Time
	deadline := t0.Add(window + timeout)
	for finished < n && ctx.Err() == nil {
		now := time.Now()
		if now.After(deadline) {
			break
		}
		// Issue every connect that is due.
		for next < n && t0.Add(time.Duration(int64(window)*int64(next)/int64(n))).Before(now.Add(time.Microsecond)) {
			c := &clients[next]
			c.start = time.Now()
			lastConnect = c.start
			_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(c.fd), uintptr(unsafe.Pointer(&sa)), unsafe.Sizeof(sa))
			if e != 0 && e != unix.EINPROGRESS {
				finish(c, false, e == unix.ECONNREFUSED || e == unix.ECONNRESET)
			} else if err := ep.add(c.fd, int32(next)); err != nil {
				return res, err
			}
			next++
		}
		// Wait for events, or until the next connect is due (in batches of at least a millisecond).
		wake := deadline
		if next < n {
			wake = t0.Add(time.Duration(int64(window) * int64(next) / int64(n)))
			if min := time.Now().Add(time.Millisecond); wake.Before(min) {
				wake = min
			}
		}
		events, err := ep.wait(wake)
		if err != nil {
			return res, err
		}
		for _, ev := range events {
			c := &clients[ev.Fd]
			if c.done {
				continue
			}
			if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && c.got < replySize {
				soerr, _ := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
				e := syscall.Errno(soerr)
				finish(c, false, e == unix.ECONNREFUSED || e == unix.ECONNRESET || soerr == 0)
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 && c.connected.IsZero() {
				c.connected = time.Now()
				if c.connected.Sub(c.start) >= time.Second {
					res.slowConnects++
				}
				if _, err := unix.Write(c.fd, req[:]); err != nil {
					finish(c, false, errors.Is(err, unix.ECONNRESET))
					continue
				}
			}
			for ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 && c.got < replySize {
				m, err := unix.Read(c.fd, buf[:])
				if m > 0 {
					c.got += m
					continue
				}
				if m == 0 || (err != nil && err != unix.EAGAIN) {
					finish(c, false, m == 0 || errors.Is(err, unix.ECONNRESET))
				}
				break
			}
			if c.got >= replySize && !c.done {
				c.latency = time.Since(c.start)
				finish(c, true, false)
				res.all = max(res.all, time.Since(t0))
			}
		}
	}
	res.window = lastConnect.Sub(t0)
	lat := make([]time.Duration, 0, n)
	for i := range clients {
		c := &clients[i]
		switch {
		case c.answered:
			res.answered++
			lat = append(lat, c.latency)
		case c.refusedBy:
			res.refused++
		default:
			res.failed++
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.p50, res.p99, res.worstOne = lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)], lat[len(lat)-1]
	}
	return res, ctx.Err()
}

// epollWaiter is an epoll set whose waits park the goroutine in the Go poller (its fd is registered there),
// so the in-process backends on the same CPU keep running while the clients wait.
type epollWaiter struct {
	fd     int
	f      *os.File
	rc     syscall.RawConn
	events [512]unix.EpollEvent
	n      int
}

func newEpollWaiter() (*epollWaiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "storm-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epollWaiter{fd: fd, f: f, rc: rc}, nil
}

func (w *epollWaiter) add(fd int, data int32) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: data}
	return unix.EpollCtl(w.fd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// wait returns the ready events, waiting until until at most.
func (w *epollWaiter) wait(until time.Time) ([]unix.EpollEvent, error) {
	w.n = 0
	if err := w.f.SetReadDeadline(until); err != nil {
		return nil, err
	}
	err := w.rc.Read(func(uintptr) bool {
		n, err := unix.EpollWait(w.fd, w.events[:], 0)
		if err == nil && n > 0 {
			w.n = n
			return true
		}
		return false
	})
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, err
	}
	return w.events[:w.n], nil
}

func (w *epollWaiter) close() { w.f.Close() }
