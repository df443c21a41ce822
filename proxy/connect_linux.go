package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/localerr"
)

// Connecting a client to a backend, as steps of its reactor: pick a healthy backend, start a non-blocking
// connect, learn the outcome from the socket's first epoll event (writable: connected; error or hang-up:
// failed), and on failure try the next backend. The rules are those of every dial: at most 1+retries
// attempts, each backend once; a local resource error (EMFILE, ENOBUFS, ...) refuses the client at once and
// blames no backend; a backend that is this proxy itself (the loop guard) is skipped without blame; any
// other failure is counted against the backend and reported to the health source.
//
// An IP literal is connected raw, on the reactor. A host name needs the resolver, so its attempt runs
// net.Dialer on a goroutine of its own, which posts the connected socket (or the error) back.

// dialState is a connection's progress through its attempts.
type dialState struct {
	addrs      []string // the healthy backends when the connection was accepted
	tried      []int    // indexes into addrs
	triedBuf   [8]int
	attempts   int
	lastErr    error
	deadline   int64 // unix nanos: the connect in progress times out
	started    int64 // unix nanos the attempt started, for the dial histogram; 0 without metrics
	registered bool  // the attempt's socket is in the reactor's set
	byName     bool  // a goroutine is dialing by name for this attempt
}

func (d *dialState) clear() { *d = dialState{} }

// adopt takes a newly accepted client socket: a slot, its place in the epoll set, a dial.
func (r *reactor) adopt(fd int) {
	c := r.addConn(fd)
	c.set = r.p.config() // one configuration for the whole connection
	if r.p.metrics != nil {
		c.start = time.Now().UnixNano()
	}
	if err := r.register(c, fd, false); err != nil {
		// Out of kernel memory or over fs.epoll.max_user_watches: this node's trouble, not a backend's.
		err = fmt.Errorf("epoll_ctl: %w", err)
		r.p.localError(opAccept, errnoName(err), err)
		r.refuseLocal(c, err)
		return
	}
	d := &c.dial
	d.addrs = r.p.backends.Healthy()
	if len(d.addrs) == 0 {
		r.noBackend(c, errNoHealthy)
		return
	}
	d.attempts = 1 + c.set.retries(len(d.addrs))
	d.tried = d.triedBuf[:0]
	r.nextAttempt(c)
}

// nextAttempt starts the connect to the next backend to try, or refuses the client when none is left.
func (r *reactor) nextAttempt(c *conn) {
	p, d := r.p, &c.dial
	for len(d.tried) < d.attempts {
		i := p.bal.pick(c.set.Balance, d.addrs, d.tried, p.table)
		if i < 0 {
			break
		}
		d.tried = append(d.tried, i)
		be := p.table.get(d.addrs[i])
		be.activeN.Add(1) // count it before dialing so concurrent LeastConn picks see it
		c.be = be
		now := time.Now().UnixNano()
		if p.metrics != nil {
			d.started = now
		}
		if !be.hasSA {
			r.dialByName(c)
			return
		}
		fd, err := p.startConnect(be)
		if err == nil {
			if err = r.register(c, fd, true); err != nil {
				rawClose(fd)
				err = fmt.Errorf("dial %s: epoll_ctl: %w", be.addr, err)
			}
		}
		if err == nil {
			c.backend = fd
			d.registered = true
			d.deadline = now + int64(c.set.DialTimeout)
			r.startDialing(c)
			return
		}
		c.be = nil
		be.activeN.Add(-1)
		if r.dialFailed(c, be, err) {
			return
		}
	}
	r.noBackend(c, fmt.Errorf("%w (%d tried): %w", errAllDialsFailed, len(d.tried), d.lastErr))
}

// dialFailed judges a failed attempt to be. It reports true when it refused the client (a local error: no
// other backend is tried, the next dial would fail the same way and only add load to a node already short).
func (r *reactor) dialFailed(c *conn, be *backend, err error) bool {
	p := r.p
	if errno, ok := localerr.Errno(err); ok {
		p.localError(opDial, errno, err, "backend", be.addr)
		r.refuseLocal(c, fmt.Errorf("%w: %w", errLocal, err))
		return true
	}
	c.dial.lastErr = err
	if errors.Is(err, errLoop) {
		p.loopRefused(be, err)
		return false
	}
	be.dialErrors.Add(1)
	inc(be.m.dialErrors)
	p.backends.ReportDialFailure(be.addr, err)
	p.log.Debug("dial backend failed", "backend", be.addr, "attempt", len(c.dial.tried), "err", err)
	return false
}

// connectEvent is the first event of a backend socket whose connect is in progress: writable without error
// means connected. An event before the outcome (none is expected) is ignored.
func (r *reactor) connectEvent(c *conn, ev uint32) {
	if ev&(unix.EPOLLERR|unix.EPOLLHUP) == 0 {
		if ev&unix.EPOLLOUT == 0 {
			return
		}
		r.stopDialing(c)
		c.down.srcEvent(ev) // the backend may have spoken first
		c.up.dstEvent(ev)
		r.connected(c)
		return
	}
	errno, _ := rawGetsockoptInt(c.backend, unix.SOL_SOCKET, unix.SO_ERROR)
	if errno == 0 {
		errno = int(unix.ECONNRESET) // accepted and reset before we looked
	}
	r.attemptFailed(c, fmt.Errorf("dial %s: connect: %w", c.be.addr, syscall.Errno(errno)))
}

// connectTimedOut fails the attempt in progress after DialTimeout.
func (r *reactor) connectTimedOut(c *conn) {
	r.attemptFailed(c, fmt.Errorf("dial %s: connect: timeout after %v", c.be.addr, c.set.DialTimeout))
}

// attemptFailed closes the socket of a failed attempt and goes on with the next one.
func (r *reactor) attemptFailed(c *conn, err error) {
	be := c.be
	r.stopDialing(c)
	rawClose(c.backend) // also leaves the epoll set
	c.backend, c.be = -1, nil
	be.activeN.Add(-1)
	if c.dial.registered {
		c.dial.registered = false
		r.newGeneration(c) // events still queued for the closed socket must not reach the next attempt's
	}
	if !r.dialFailed(c, be, err) {
		r.nextAttempt(c)
	}
}

// connected counts the successful dial and starts moving bytes.
func (r *reactor) connected(c *conn) {
	p, be := r.p, c.be
	if c.dial.started != 0 && be.m.dialDuration != nil {
		observe(be.m.dialDuration, time.Duration(time.Now().UnixNano()-c.dial.started))
	}
	c.dial.clear()
	be.total.Add(1)
	inc(be.m.conns)
	gaugeAdd(be.m.active, 1)
	c.state = stateOpen
	p.backendReachable(be)
	if r.closing || be.closing.Load() {
		// Shutting down, or CloseBackend's grace for be ended while this dial was in flight.
		r.release(c, true)
		return
	}
	r.tuneClient(c)
	ka := uint8(0)
	if !r.s.inherited || c.set.KeepAlive != r.s.lnKeepAlive {
		ka |= kaClient // a Listen listener passes it on, unless SetConfig changed KeepAlive since
	}
	if be.hasSA && c.set.KeepAlive > 0 {
		ka |= kaBackend // a raw socket starts with keepalive off; net.Dialer set it on one dialed by name
	}
	r.deferKeepAlive(c, ka)
	if h := p.hooks.connected; h != nil {
		h(c.client, c.backend)
	}
	r.open(c)
}

// tuneClient sets TCP_NODELAY on a client socket that did not inherit it (a raw accept from a listener not
// made by Listen): small replies must not wait for an ACK (Nagle). Keepalive comes later (deferKeepAlive).
func (r *reactor) tuneClient(c *conn) {
	s := r.s
	if s.setNoDelay {
		_ = rawSetsockoptInt(c.client, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
}

// abortDial ends a connection still dialing when the drain gives up: the client gets a reset (nobody will
// serve it); a dial by name still running finds its connection gone and closes what it connected.
func (r *reactor) abortDial(c *conn) { r.release(c, true) }

// dialByName runs the attempt for a backend given by host name on a goroutine (the resolver blocks).
func (r *reactor) dialByName(c *conn) {
	s, be, set, ref := r.s, c.be, c.set, c.ref()
	c.dial.byName = true
	s.dialers.Go(func() {
		fd, err := s.p.dialName(s.dialCtx, set, be)
		r.post(message{fd: -1, fn: func(r *reactor) { r.nameDialed(ref, fd, err) }})
	})
}

// nameDialed continues a connection whose dial by name finished.
func (r *reactor) nameDialed(ref connRef, fd int, err error) {
	c := r.lookup(ref.slot, ref.gen)
	if c == nil || c.state != stateDialing || !c.dial.byName {
		if fd >= 0 {
			rawClose(fd) // the connection ended meanwhile
		}
		return
	}
	c.dial.byName = false
	if err == nil {
		if err = r.register(c, fd, true); err != nil {
			rawClose(fd)
			err = fmt.Errorf("dial %s: epoll_ctl: %w", c.be.addr, err)
		}
	}
	if err == nil {
		c.backend = fd
		r.connected(c)
		return
	}
	if r.s.dialCtx.Err() != nil {
		r.release(c, true) // shutting down
		return
	}
	be := c.be
	c.be = nil
	be.activeN.Add(-1)
	if !r.dialFailed(c, be, err) {
		r.nextAttempt(c)
	}
}

// startDialing and stopDialing keep the list of connects in progress, whose timeouts the reactor watches.
func (r *reactor) startDialing(c *conn) {
	c.dprev, c.dnext = r.dialing.dprev, &r.dialing
	r.dialing.dprev.dnext = c
	r.dialing.dprev = c
}

func (r *reactor) stopDialing(c *conn) {
	if c.dnext == nil {
		return
	}
	c.dprev.dnext, c.dnext.dprev = c.dnext, c.dprev
	c.dprev, c.dnext = nil, nil
	c.dial.deadline = 0
}

// noBackend refuses a client after no backend could be dialed, logging once per outage.
func (r *reactor) noBackend(c *conn, err error) {
	p := r.p
	p.refusedNoBackend.Add(1)
	p.metrics.refusedInc(reasonNoBackend)
	if !p.outage.Swap(true) {
		p.log.Warn("no healthy backend: resetting new connections until one is reachable", "err", err)
	}
	p.log.Debug("connection refused", "client", peer{c.client}, "err", err)
	rawReset(c.client)
	r.end(c)
}

// refuseLocal refuses a client at once (RST) after a local resource error (counted and logged by the
// caller).
func (r *reactor) refuseLocal(c *conn, err error) {
	p := r.p
	p.refusedLocal.Add(1)
	p.metrics.refusedInc(reasonLocalError)
	p.log.Debug("connection refused: local resource error", "client", peer{c.client}, "err", err)
	rawReset(c.client)
	r.end(c)
}

// errnoName names err's errno for the local-errors metric, "other" when it has none.
func errnoName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return "other"
}

// peer logs a socket's remote address. It is a slog.LogValuer so the getpeername runs only when a record
// is actually written (debug logs of refused or failed connections), never on the hot path.
type peer struct{ fd int }

// LogValue returns the remote address as ip:port, or a placeholder when it cannot be read.
func (p peer) LogValue() slog.Value {
	if ap := rawGetpeername(p.fd); ap.IsValid() {
		return slog.StringValue(ap.String())
	}
	return slog.StringValue("?")
}
