package proxy

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// idleSet parks idle downstream directions in an epoll set the proxy owns, so an idle proxied connection
// keeps one goroutine (upstream, parked on the client socket) instead of two: a parked goroutine costs its
// 2 KiB minimum stack plus its g, which was a third of an idle connection's memory.
//
// When a downstream pump finds the backend socket empty it arms the socket here (EPOLLONESHOT) and its
// goroutine exits; when the backend becomes readable (data, FIN, reset) the watcher goroutine starts a fresh
// downstream goroutine. The event carries a slot index and a generation instead of a pointer, so a stale
// event for a connection that ended (or whose conn struct was reused) finds nothing, or at worst wakes a
// direction that parks again at once. The epoll fd itself is registered with the Go poller, so the watcher
// parks like any socket reader.
type idleSet struct {
	epfd int // owned by ep; used raw for epoll_ctl (ep.Fd() would make it blocking)
	ep   *os.File
	rc   syscall.RawConn

	mu    sync.Mutex
	slots []*conn
	free  []int32
}

func newIdleSet() (*idleSet, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(fd), "proxy-idle-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		return nil, err
	}
	return &idleSet{epfd: fd, ep: ep, rc: rc}, nil
}

// add gives c a slot (and a new generation) for the life of one proxied connection.
func (is *idleSet) add(c *conn) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if n := len(is.free); n > 0 {
		c.slot = is.free[n-1]
		is.free = is.free[:n-1]
	} else {
		c.slot = int32(len(is.slots))
		is.slots = append(is.slots, nil)
	}
	c.gen++
	is.slots[c.slot] = c
}

// remove frees c's slot; its events, if any are still in flight, match nothing from now on.
func (is *idleSet) remove(c *conn) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.slots[c.slot] = nil
	is.free = append(is.free, c.slot)
}

// armer is what arming a connection's backend socket needs, copied out of the conn while its downstream
// pump still owns it: once the direction is published as parked the conn may be released and reused.
type armer struct {
	epfd int
	op   int // EPOLL_CTL_ADD the first time, then EPOLL_CTL_MOD
	ev   unix.EpollEvent
}

// armer prepares the arm of c's backend socket and records that it will be in the set. It must run on the
// downstream pump's goroutine before the direction is published as parked.
func (is *idleSet) armer(c *conn) armer {
	a := armer{epfd: is.epfd, op: unix.EPOLL_CTL_MOD,
		ev: unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: c.slot, Pad: int32(c.gen)}}
	if !c.downInSet {
		a.op = unix.EPOLL_CTL_ADD
		c.downInSet = true
	}
	return a
}

// arm registers (first time) or re-arms fd for one readiness event. It must run inside a RawConn.Control
// of that socket, so the fd cannot be closed and reused meanwhile.
func (a *armer) arm(fd int) error {
	if err := unix.EpollCtl(a.epfd, a.op, fd, &a.ev); err != nil { // a raw syscall in x/sys
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run hands every ready connection to wake until the set is closed. wake runs under is.mu, right after
// the generation check: remove and add take is.mu too, so an event can never reach a conn that was
// released (and maybe reused by another connection) after the check. wake must be short and not block.
func (is *idleSet) run(wake func(*conn)) {
	var events [128]unix.EpollEvent
	poll := func(fd uintptr) bool {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		n := int(r)
		if e != 0 || n <= 0 {
			return false // nothing ready (EINTR included): park until the epoll fd is readable
		}
		is.mu.Lock()
		for _, ev := range events[:n] {
			if int(ev.Fd) < len(is.slots) {
				if c := is.slots[ev.Fd]; c != nil && int32(c.gen) == ev.Pad {
					wake(c)
				}
			}
		}
		is.mu.Unlock()
		return true
	}
	for {
		if err := is.rc.Read(poll); err != nil {
			return // closed
		}
	}
}

func (is *idleSet) close() { _ = is.ep.Close() }
