package proxy

import (
	"time"

	"golang.org/x/sys/unix"
)

// conn is one proxied connection, owned by one reactor from accept to close: the client socket, the backend
// socket once a connect started, and a pump per direction. Only its reactor reads or writes it. conns are
// pooled, so a connection allocates nothing of its own.
type conn struct {
	r       *reactor
	slot    int32  // index in r.slots
	gen     uint32 // generation: events and posted results carry it (31 bits)
	state   connState
	client  int       // client socket
	backend int       // backend socket, -1 before the first connect attempt
	set     *settings // the configuration in force when the connection was accepted, for its whole life
	be      *backend  // the backend of the connect in progress, then of the connection; nil before
	start   int64     // unix nanos of the accept, for the duration histogram; 0 without metrics

	dial         dialState
	dprev, dnext *conn // the reactor's list of connects in progress, while dialing a raw socket

	up, down  pump
	queued    bool  // on the reactor's again list
	keepAlive uint8 // sockets whose keepalive the next keepalive pass sets (kaClient, kaBackend)

	touched  bool  // bytes moved since the idle sweeper last looked
	lastSeen int64 // unix nanos when the sweeper last saw activity; 0 not seen yet
}

type connState uint8

const (
	stateDialing connState = iota // the backend connect (or a dial by name) is in progress
	stateOpen                     // both sockets connected: bytes move
)

func newConn() *conn { return &conn{client: -1, backend: -1} }

// token is the epoll data word for one of c's sockets under its current generation.
func (c *conn) token(backend bool) int32 {
	t := int32(c.gen << 1)
	if backend {
		t |= 1
	}
	return t
}

func (c *conn) ref() connRef { return connRef{c.slot, c.gen} }

// clear drops references before the conn goes back to the pool.
func (c *conn) clear() {
	c.r, c.set, c.be = nil, nil, nil
	c.client, c.backend = -1, -1
	c.state, c.start, c.queued, c.keepAlive, c.touched, c.lastSeen = stateDialing, 0, false, 0, false, 0
	c.dial.clear()
	c.up, c.down = pump{}, pump{}
}

// clientEvent records what the client socket reported and moves bytes if the connection is open.
func (r *reactor) clientEvent(c *conn, ev uint32) {
	c.up.srcEvent(ev)
	c.down.dstEvent(ev)
	if c.state == stateOpen {
		r.service(c)
	}
}

// backendEvent records what the backend socket reported: the outcome of a connect in progress, or
// readiness to move bytes.
func (r *reactor) backendEvent(c *conn, ev uint32) {
	if c.state == stateDialing {
		r.connectEvent(c, ev)
		return
	}
	c.down.srcEvent(ev)
	c.up.dstEvent(ev)
	r.service(c)
}

// open starts moving bytes once the backend socket is connected.
func (r *reactor) open(c *conn) {
	c.state = stateOpen
	c.up.start(c.client, c.backend, true, c.be)
	c.down.start(c.backend, c.client, false, c.be)
	r.service(c)
}

// service moves what both directions can move now. A direction whose source ended and whose bytes are all
// delivered passes the end on (half-close: shutdown of the other socket's sending side, so the peer still
// gets its answer); when both have ended the connection is released. An error aborts the connection.
func (r *reactor) service(c *conn) {
	for _, d := range [2]*pump{&c.up, &c.down} {
		if d.done {
			continue
		}
		more, err := d.move(r)
		if d.active {
			c.touched, d.active = true, false
		}
		if err != nil {
			r.fail(c, d, err)
			return
		}
		if more {
			r.queue(c)
		}
		if d.ended() {
			d.finish(r.p.pipes)
			if other := c.other(d); !other.done {
				_ = rawShutdown(d.dst, unix.SHUT_WR) // the last direction's close sends the FIN anyway
			}
		}
	}
	if c.up.done && c.down.done {
		r.release(c, false)
	}
}

func (c *conn) other(d *pump) *pump {
	if d == &c.up {
		return &c.down
	}
	return &c.up
}

// fail records a copy error and aborts the connection: the peer of the failed side gets a reset, not a
// clean end of stream, and so does the other peer.
func (r *reactor) fail(c *conn, d *pump, err error) {
	dir := "downstream"
	if d.upstream {
		dir = "upstream"
		inc(c.be.m.copyErrUp)
	} else {
		inc(c.be.m.copyErrDown)
	}
	r.p.log.Debug("proxy copy error", "backend", c.be.addr, "client", peer{c.client}, "direction", dir, "err", err)
	r.release(c, true)
}

// release ends c: its sockets are closed (with resets when reset is set, else with FINs), its backend's
// counters and the proxy's are updated, and its slot is freed. It is the one way a connection ends once it
// has a backend, whatever ended it.
func (r *reactor) release(c *conn, reset bool) {
	c.up.finish(r.p.pipes)
	c.down.finish(r.p.pipes)
	if c.state == stateDialing {
		r.stopDialing(c)
	}
	if reset {
		setLinger0(c.client)
		if c.backend >= 0 {
			setLinger0(c.backend)
		}
	}
	rawClose(c.client)
	if c.backend >= 0 {
		rawClose(c.backend)
	}
	if be := c.be; be != nil {
		be.activeN.Add(-1)
		if c.state == stateOpen {
			gaugeAdd(be.m.active, -1)
		}
	}
	if c.start != 0 && c.state == stateOpen {
		observe(r.s.connDuration, time.Duration(time.Now().UnixNano()-c.start))
	}
	r.end(c)
}

// end frees c's slot and the proxy's count of it: after release, or after a refusal (the client was reset
// and no backend was ever connected).
func (r *reactor) end(c *conn) {
	r.stopDialing(c)
	r.removeConn(c)
	r.load.Add(-1)
	r.p.open.Add(-1)
	r.s.ended()
}

// closeWhere closes (FIN, not reset) every open connection for which match holds and returns how many. It is
// the one way connections end that their reactor did not see end: drain, the idle sweeper and CloseBackend
// all come through here, on the reactor's goroutine.
func (r *reactor) closeWhere(match func(*conn) bool) int {
	n := 0
	r.forEach(func(c *conn) {
		if c.state == stateOpen && match(c) {
			r.release(c, false)
			n++
		}
	})
	return n
}

// closeIdle closes the open connections that moved no byte for idle nanoseconds, as of now.
func (r *reactor) closeIdle(now, idle int64) int {
	return r.closeWhere(func(c *conn) bool {
		if c.touched || c.lastSeen == 0 {
			c.touched, c.lastSeen = false, now // active since the last pass, or first seen
			return false
		}
		if now-c.lastSeen < idle {
			return false
		}
		r.p.log.Debug("idle timeout: closing connection", "backend", c.be.addr, "client", peer{c.client})
		return true
	})
}

// closeAll ends every connection at the drain timeout: open ones with a FIN, dials in progress with a
// reset of the client (shutting down: nobody will serve it), and from now on every dial as it completes.
func (r *reactor) closeAll() int {
	r.closing = true
	n := r.refuseNew()
	r.forEach(func(c *conn) {
		if c.state == stateOpen {
			r.release(c, false)
		} else {
			r.abortDial(c)
		}
		n++
	})
	return n
}
