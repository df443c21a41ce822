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

// arm registers (first time) or re-arms fd, the backend socket of c, for one readiness event. It must run
// inside a RawConn.Control of that socket, so the fd cannot be closed and reused meanwhile.
func (is *idleSet) arm(fd int, c *conn) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: c.slot, Pad: int32(c.gen)}
	op := unix.EPOLL_CTL_MOD
	if !c.downInSet.Swap(true) { // before the call: once armed, c belongs to whoever the event wakes
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(is.epfd, op, fd, &ev); err != nil { // a raw syscall in x/sys
		c.downInSet.Store(op == unix.EPOLL_CTL_MOD) // not armed: no event will come
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run hands every ready connection to wake until the set is closed.
func (is *idleSet) run(wake func(*conn)) {
	var events [128]unix.EpollEvent
	ready := make([]*conn, 0, len(events))
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
					ready = append(ready, c)
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
		for i, c := range ready {
			wake(c)
			ready[i] = nil
		}
		ready = ready[:0]
	}
}

func (is *idleSet) close() { _ = is.ep.Close() }
