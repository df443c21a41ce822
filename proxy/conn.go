package proxy

import (
	"errors"
	"net"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// conn is one proxied connection: the client socket, the backend socket and a pump per direction, each on
// its own goroutine (fresh, so a parked pump keeps the minimal stack); whichever finishes last releases the
// conn. conns are pooled so the per-connection bookkeeping does not allocate.
type conn struct {
	s        *server
	be       *backend
	client   socket
	backend  socket
	up, down pump

	running atomic.Int32 // pumps still running (plus a pump inside park); whoever brings it to 0 releases the conn
	// downState is the downstream direction's owner: a goroutine (downRunning), the server's idle set with
	// no goroutine (downParked), or nobody (downDone). Moves out of downParked are CASes, so exactly one of
	// the watcher (wake) and a closer (claim) takes a parked direction over.
	downState atomic.Int32
	downInSet bool  // the backend socket is registered in the idle set (re-arm with MOD); the down pump's
	slot      int32 // index in the idle set, valid while tracked
	gen       uint32

	closed  atomic.Bool // both sockets closed (once)
	touched atomic.Bool // bytes moved since the idle sweeper last looked
	start   int64       // unix nanos of the dial's start, for the duration histogram; 0 without metrics

	// Guarded by server.mu.
	lastSeen   int64 // unix nanos when the sweeper last saw activity
	prev, next *conn
}

const (
	downRunning = iota
	downParked
	downDone
)

func newConn() *conn {
	c := &conn{}
	c.up.bind()
	c.down.bind()
	return c
}

// reset prepares a pooled conn for a new client/backend pair.
func (c *conn) reset(s *server, be *backend, client, backend socket) error {
	c.s, c.be, c.client, c.backend = s, be, client, backend
	c.running.Store(2)
	c.downState.Store(downRunning)
	c.downInSet = false
	c.closed.Store(false)
	c.touched.Store(false)
	c.lastSeen, c.prev, c.next = 0, nil, nil
	crc, err := client.SyscallConn()
	if err != nil {
		return err
	}
	brc, err := backend.SyscallConn()
	if err != nil {
		return err
	}
	c.up.reset(c, true, crc, brc)
	c.down.reset(c, false, brc, crc)
	c.down.parkIdle = s.idle != nil
	return nil
}

// clear drops references before the conn goes back to the pool.
func (c *conn) clear() {
	c.up.clear()
	c.down.clear()
	c.s, c.be, c.client, c.backend = nil, nil, nil, nil
}

// pumpUp and pumpDown are the pump goroutines' bodies.
func (c *conn) pumpUp() {
	s := c.s // c may be recycled once the pump returns
	defer s.connWG.Done()
	c.runPump(&c.up)
}

func (c *conn) pumpDown() {
	s := c.s // c may be recycled once the pump returns
	err := c.down.run()
	if err == errParked {
		if c.park() {
			return // the count in connWG stays with the parked direction
		}
		err = net.ErrClosed
	}
	c.endPump(&c.down, err)
	s.connWG.Done()
}

// park hands the idle downstream direction to the idle set. It reports false when the backend socket was
// closed meanwhile and this goroutine still owns the direction (it must then finish it).
//
// Publishing downParked gives the direction away: from that store on, a closer (idle sweep, drain, the
// upstream pump failing) may claim and finish it, and without more the conn could be released, recycled by
// the pool and handed to a new connection before the arm below even ran (a nil srcRC, or a CAS that steals
// the new connection's parked direction). So park holds a reference of its own (running, and connWG so
// Serve waits for it) from before the store until it no longer reads c; whoever drops the last reference
// releases the conn. The arm's parameters are copied out first, because a woken pump may park (and
// prepare its own arm) concurrently.
func (c *conn) park() bool {
	s := c.s
	c.running.Add(1)
	s.connWG.Add(1)
	defer func() {
		c.unref()
		s.connWG.Done()
	}()
	arm := s.idle.armer(c)
	c.downState.Store(downParked)
	if h := s.p.hooks.parked; h != nil {
		h(c)
	}
	var armErr error
	err := c.down.srcRC.Control(func(fd uintptr) { armErr = arm.arm(int(fd)) })
	if err == nil && armErr == nil {
		return true
	}
	// Not armed, so no event will come: take the direction back, unless a closer claimed it already.
	if !c.downState.CompareAndSwap(downParked, downRunning) {
		return true
	}
	if arm.op == unix.EPOLL_CTL_ADD {
		c.downInSet = false // the ADD failed: the socket is not in the set
	}
	return false
}

// wakeDown is the idle set's callback: the backend became readable, run the downstream direction again.
func (c *conn) wakeDown() {
	if c.downState.CompareAndSwap(downParked, downRunning) {
		go c.pumpDown()
	}
}

// runPump runs one direction to its end.
func (c *conn) runPump(d *pump) {
	c.endPump(d, d.run())
}

// endPump ends one direction: on EOF (nil) it propagates the half-close to the other side; on an error it
// closes both sockets so the other direction ends too. The last direction releases the conn.
func (c *conn) endPump(d *pump, err error) {
	if !d.upstream {
		c.downState.Store(downDone)
	}
	if err != nil {
		c.fail(d, err)
	} else if c.running.Load() > 1 {
		// EOF from src while the other direction still runs: tell dst we will send no more, but keep
		// reading its reply. When this is the last direction, release's close sends the FIN anyway.
		_ = d.dstRC.Control(d.shutdownFn)
	}
	c.unref()
}

// unref drops one reference (a direction, or a parking pump); the last one releases the conn.
func (c *conn) unref() {
	if c.running.Add(-1) == 0 {
		c.s.release(c)
	}
}

// fail records a copy error and aborts the connection. An error caused by our own close (the other
// direction failed, idle timeout, drain) is not a copy error.
func (c *conn) fail(d *pump, err error) {
	if errors.Is(err, net.ErrClosed) || c.closed.Load() {
		c.closeBoth(false)
		return
	}
	dir := "downstream"
	if d.upstream {
		dir = "upstream"
		inc(c.be.m.copyErrUp)
	} else {
		inc(c.be.m.copyErrDown)
	}
	c.s.p.log.Debug("proxy copy error", "backend", c.be.addr, "client", peer{c.client}, "direction", dir, "err", err)
	// Pass the abort on: the peer of the failed side gets a reset, not a clean end of stream.
	c.closeBoth(true)
}

// closeBoth closes both sockets once; reset sends RST instead of FIN. Safe from any goroutine.
func (c *conn) closeBoth(reset bool) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	if reset {
		setLinger0(c.client)
		setLinger0(c.backend)
	}
	_ = c.client.Close()
	_ = c.backend.Close()
	if c.downState.CompareAndSwap(downParked, downDone) {
		// The parked direction has no goroutine to notice the close (a closed fd leaves the epoll set
		// silently): finish it here, off the caller's locks (the sweeper and drain hold server.mu).
		go func() {
			s := c.s
			c.endPump(&c.down, net.ErrClosed)
			s.connWG.Done()
		}()
	}
}
