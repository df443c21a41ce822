package proxy

import (
	"errors"
	"net"
	"sync/atomic"
)

// conn is one proxied connection: the client socket, the backend socket and a pump per direction, each on
// its own goroutine (fresh, so a parked pump keeps the minimal stack); whichever finishes last releases the
// conn. conns are pooled so the per-connection bookkeeping does not allocate.
type conn struct {
	s        *server
	be       *backend
	client   *net.TCPConn
	backend  socket
	up, down pump

	running atomic.Int32 // pumps still running; the one that brings it to 0 releases the conn
	closed  atomic.Bool  // both sockets closed (once)
	touched atomic.Bool  // bytes moved since the idle sweeper last looked

	// Guarded by server.mu.
	lastSeen   int64 // unix nanos when the sweeper last saw activity
	prev, next *conn
}

func newConn() *conn {
	c := &conn{}
	c.up.bind()
	c.down.bind()
	return c
}

// reset prepares a pooled conn for a new client/backend pair.
func (c *conn) reset(s *server, be *backend, client *net.TCPConn, backend socket) error {
	c.s, c.be, c.client, c.backend = s, be, client, backend
	c.running.Store(2)
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
	defer s.connWG.Done()
	c.runPump(&c.down)
}

// runPump runs one direction to its end: on EOF it propagates the half-close to the other side; on an error
// it closes both sockets so the other direction ends too. The last direction releases the conn.
func (c *conn) runPump(d *pump) {
	err := d.run()
	if err != nil {
		c.fail(d, err)
	} else if c.running.Load() > 1 {
		// EOF from src while the other direction still runs: tell dst we will send no more, but keep
		// reading its reply. When this is the last direction, release's close sends the FIN anyway.
		_ = d.dstRC.Control(d.shutdownFn)
	}
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
	c.s.p.log.Debug("proxy copy error", "backend", c.be.addr, "client", c.client.RemoteAddr(), "direction", dir, "err", err)
	// Pass the abort on: the peer of the failed side gets a reset, not a clean end of stream.
	c.closeBoth(true)
}

// closeBoth closes both sockets once; reset sends RST instead of FIN. Safe from any goroutine.
func (c *conn) closeBoth(reset bool) {
	if !c.closed.CompareAndSwap(false, true) {
		return
	}
	if reset {
		_ = c.client.SetLinger(0)
		setLinger0(c.backend)
	}
	_ = c.client.Close()
	_ = c.backend.Close()
}
