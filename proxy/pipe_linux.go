package proxy

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// pipe is a kernel pipe used as the splice buffer between two sockets.
type pipe struct{ r, w int }

func newPipe(size int) (pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return pipe{}, fmt.Errorf("create splice pipe: %w", err)
	}
	if size > 0 {
		// Best effort: a bigger pipe means fewer splice calls per megabyte; the default (64 KiB) still works,
		// and an unprivileged process may be capped by /proc/sys/fs/pipe-max-size.
		_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, size)
	}
	return pipe{r: fds[0], w: fds[1]}, nil
}

func (p pipe) close() {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
}

// pipePool is the proxy's bounded free list of empty pipes. A direction borrows a pipe only while bytes
// are in flight and gives it back before it parks, so the number of pipes tracks the number of busy
// directions, not the number of connections, and at most cap(free) idle pipes are kept.
type pipePool struct {
	size int // F_SETPIPE_SZ for new pipes; 0 keeps the kernel default

	mu   sync.Mutex
	free []pipe
}

func newPipePool(keep, size int) *pipePool {
	return &pipePool{size: size, free: make([]pipe, 0, keep)}
}

// get returns an empty pipe, from the free list if possible.
func (pp *pipePool) get() (pipe, error) {
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	return newPipe(pp.size)
}

// put returns an EMPTY pipe to the free list, or closes it when the list is full. A pipe that
// may still hold bytes must be closed instead (discard), never put back.
func (pp *pipePool) put(p pipe) {
	pp.mu.Lock()
	if len(pp.free) < cap(pp.free) {
		pp.free = append(pp.free, p)
		pp.mu.Unlock()
		return
	}
	pp.mu.Unlock()
	p.close()
}

// discard closes a pipe that may hold stale bytes.
func (pp *pipePool) discard(p pipe) { p.close() }

// drain closes every idle pipe; the pool stays usable and refills on demand.
func (pp *pipePool) drain() {
	pp.mu.Lock()
	free := pp.free
	pp.free = make([]pipe, 0, cap(free))
	pp.mu.Unlock()
	for _, p := range free {
		p.close()
	}
}

// idle reports how many pipes the free list holds (for tests).
func (pp *pipePool) idle() int {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return len(pp.free)
}
