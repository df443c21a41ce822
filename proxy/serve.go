package proxy

import (
	"context"
	"errors"
	"fmt"
	"github.com/vipd/vipd/internal/localerr"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// server is the state of one Serve call: its listener, its open connections and its goroutines.
type server struct {
	p  *Proxy
	ln net.Listener

	// dialCtx is cancelled when draining gives up, so dials in progress end too.
	dialCtx    context.Context
	cancelDial context.CancelFunc
	connWG     sync.WaitGroup // handler jobs and pump goroutines: what drain waits for

	// Handler goroutines are reused: the dialer grows a goroutine's stack to several KiB, which a fresh
	// goroutine per connection pays for again (morestack, copystack). Idle ones wait on handoff.
	handoff      chan socket   // unbuffered: a send succeeds only if an idle handler is waiting
	quit         chan struct{} // closed after drain: idle handlers exit
	idleHandlers atomic.Int32
	handlerWG    sync.WaitGroup

	inherited   bool          // ln is a Listen listener: accepted sockets inherit lnKeepAlive and TCP_NODELAY
	lnKeepAlive time.Duration // the keepalive a Listen listener passes on
	setNoDelay  bool          // accepted sockets need TCP_NODELAY set: raw accepts from a listener not made by Listen
	ra          *rawAccepter  // raw accept4 on a TCP listener; nil: ln.Accept
	idle        *idleSet      // where idle downstream directions wait; nil: they park a goroutine each

	mu       sync.Mutex
	head     *conn // tracked connections (intrusive list)
	n        int
	closing  bool // force-closing: connections that finish dialing now are closed at once
	stopping bool // drained: CloseBackend starts no more closers

	closers sync.WaitGroup // CloseBackend's timers: they end at their grace or when the server quits
}

// Serve accepts connections on ln and proxies each to a healthy backend until ctx is done. Then it stops
// accepting (closes ln; new connects are refused by the kernel), lets open connections finish for up to
// DrainTimeout, closes the rest and returns nil once every goroutine it started has ended.
//
// Temporary accept errors (out of file descriptors or memory) are retried with a short back-off; those of a
// local resource (EMFILE, ENFILE, ENOBUFS, ENOMEM) are counted in vipd_proxy_local_errors_total and logged at
// most once a minute. Any other accept error stops accepting, drains the same way, and is returned. ln must
// be a TCP listener. Serve may run concurrently on several listeners with the same Proxy. While it runs,
// ln's address is one the loop guard refuses to dial.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	p.serving.Add(1)
	defer func() {
		if p.serving.Add(-1) == 0 {
			p.pipes.drain()
		}
	}()
	l, inherited := ln.(listener)
	s := &server{p: p, ln: ln, inherited: inherited, lnKeepAlive: l.keepAlive, handoff: make(chan socket), quit: make(chan struct{})}
	s.dialCtx, s.cancelDial = context.WithCancel(context.Background())
	defer s.cancelDial()
	if a, ok := addrPortOf(ln.Addr()); ok {
		p.addListen(a)
		defer p.removeListen(a)
	}
	p.mu.Lock()
	p.servers[s] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.servers, s)
		p.mu.Unlock()
	}()

	if ra, ok := newRawAccepter(ln); ok {
		s.ra = ra
	}
	var bg sync.WaitGroup
	stop := make(chan struct{})
	bg.Go(func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		_ = ln.Close()
		if s.ra != nil {
			s.ra.close()
		}
	})
	if is, err := newIdleSet(); err != nil {
		p.log.Warn("no idle set: idle connections keep a goroutine per direction", "err", err)
	} else {
		s.idle = is
		bg.Go(func() { is.run((*conn).wakeDown) })
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	bg.Go(func() { s.sweep(sweepCtx) })

	err := s.accept(ctx)
	close(stop)
	s.drain()
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	close(s.quit)
	s.closers.Wait()
	s.handlerWG.Wait()
	stopSweep()
	if s.idle != nil {
		s.idle.close() // every connection ended in drain, so nothing is parked
	}
	bg.Wait()
	return err
}

// accept runs the accept loop until ctx is done (nil) or a permanent accept error.
func (s *server) accept(ctx context.Context) error {
	next := s.acceptConn
	if ra := s.ra; ra != nil {
		_, inherited := s.ln.(listener)
		s.setNoDelay = !inherited
		next = func() (socket, error) {
			f, err := ra.accept()
			if err != nil {
				return nil, err // not f: a nil *os.File in a socket is not a nil socket
			}
			return f, nil
		}
	}
	var backoff time.Duration
	for {
		c, err := next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !temporary(err) {
				return fmt.Errorf("accept on %s: %w", s.ln.Addr(), err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if errno, ok := localerr.Errno(err); ok {
				s.p.localError(opAccept, errno, err, "listener", s.ln.Addr().String(), "backoff", backoff)
			} else {
				s.p.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
			}
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.admit(c)
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

// acceptConn accepts through ln.Accept: the way for listeners that are not a plain *net.TCPListener.
func (s *server) acceptConn() (socket, error) {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			return tc, nil
		}
		s.p.log.Error("proxy needs a TCP listener; closing connection", "type", fmt.Sprintf("%T", c))
		_ = c.Close()
	}
}

// admit applies MaxConns and hands an accepted connection to its own goroutine.
func (s *server) admit(tc socket) {
	p := s.p
	if n, limit := p.open.Add(1), p.config().MaxConns; limit > 0 && n > int64(limit) {
		p.open.Add(-1)
		p.refusedMaxConns.Add(1)
		p.metrics.refusedInc(reasonMaxConns)
		p.log.Debug("connection refused: max connections", "client", peer{tc}, "max_conns", limit)
		reset(tc)
		return
	}
	s.connWG.Add(1)
	select {
	case s.handoff <- tc:
	default:
		s.handlerWG.Add(1)
		go s.handler(tc)
	}
}

// maxIdleHandlers bounds the handler goroutines kept waiting for the next connection.
const maxIdleHandlers = 16

// handler runs handle for client, then for further connections handed off by admit, until it has been
// idle while maxIdleHandlers others were idle too, or the server quits.
func (s *server) handler(client socket) {
	defer s.handlerWG.Done()
	for {
		s.handle(client)
		if s.idleHandlers.Add(1) > maxIdleHandlers {
			s.idleHandlers.Add(-1)
			return
		}
		select {
		case client = <-s.handoff:
			s.idleHandlers.Add(-1)
		case <-s.quit:
			s.idleHandlers.Add(-1)
			return
		}
	}
}

// handle dials a backend for client and starts one pump goroutine per direction.
func (s *server) handle(client socket) {
	defer s.connWG.Done()
	p := s.p
	set := p.config() // one configuration for the whole connection
	var start int64
	if p.metrics != nil {
		start = time.Now().UnixNano()
	}
	bc, be, err := p.dial(s.dialCtx, set)
	if err != nil {
		p.open.Add(-1)
		switch {
		case s.dialCtx.Err() != nil:
			reset(client) // shutting down
		case errors.Is(err, errLocal):
			p.refuseLocal(client, err)
		default:
			p.noBackend(client, err)
		}
		return
	}
	p.backendReachable(be)
	// A Listen listener passes its keepalive on, unless SetConfig changed KeepAlive since it was opened.
	setKA := !s.inherited || set.KeepAlive != s.lnKeepAlive
	if setKA || s.setNoDelay {
		p.tuneAccepted(client, set.KeepAlive, setKA, s.setNoDelay)
	}
	if h := p.hooks.connected; h != nil {
		h(client, bc)
	}

	c := p.conns.Get().(*conn)
	c.start = start
	if err := c.reset(s, be, client, bc); err != nil || !s.track(c) {
		if err != nil {
			p.log.Error("proxy connection setup failed", "err", err)
		}
		c.closeBoth(true)
		s.finish(c)
		return
	}
	// Both pumps get fresh goroutines: this one's stack grew deep in the dialer and would stay that size
	// for the connection's whole life, a few KiB per idle connection.
	s.connWG.Add(2)
	go c.pumpUp()
	go c.pumpDown()
}

// release ends a connection whose pumps both returned.
func (s *server) release(c *conn) {
	c.closeBoth(false)
	s.untrack(c)
	if c.start != 0 {
		observe(s.p.metrics.connDuration(), time.Duration(time.Now().UnixNano()-c.start))
	}
	s.finish(c)
}

// finish updates counters and recycles c.
func (s *server) finish(c *conn) {
	p := s.p
	c.be.activeN.Add(-1)
	gaugeAdd(c.be.m.active, -1)
	p.open.Add(-1)
	c.clear()
	p.conns.Put(c)
}

// track adds c to the open set, or reports false when the server is force-closing or c's backend is being
// closed (CloseBackend's grace ended while c was dialing).
func (s *server) track(c *conn) bool {
	var now int64 // 0: the sweeper starts its clock when it first sees c
	if s.p.config().IdleTimeout > 0 {
		now = time.Now().UnixNano()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || c.be.closing.Load() {
		return false
	}
	c.lastSeen = now
	c.next = s.head
	if s.head != nil {
		s.head.prev = c
	}
	s.head = c
	s.n++
	if s.idle != nil {
		s.idle.add(c)
	}
	return true
}

func (s *server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.prev != nil {
		c.prev.next = c.next
	} else if s.head == c {
		s.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	}
	c.prev, c.next = nil, nil
	s.n--
	if s.idle != nil {
		s.idle.remove(c)
	}
}

// drain waits up to DrainTimeout for connections to end, then closes the rest and waits for their goroutines.
func (s *server) drain() {
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	s.mu.Lock()
	n := s.n
	s.mu.Unlock()
	timeout := s.p.config().DrainTimeout
	if n > 0 {
		s.p.log.Info("draining connections", "open", n, "timeout", timeout)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.cancelDial()
	s.mu.Lock()
	s.closing = true
	n = s.closeWhereLocked(func(*conn) bool { return true })
	s.mu.Unlock()
	s.p.log.Warn("drain timeout: closed open connections", "closed", n, "timeout", timeout)
	<-done
}

// closeWhereLocked closes (FIN, not reset) every tracked connection for which match holds and returns how
// many it closed. s.mu must be held. It is the one way the server ends connections it did not see end: drain,
// the idle sweeper and CloseBackend all come through here.
func (s *server) closeWhereLocked(match func(*conn) bool) int {
	n := 0
	for c := s.head; c != nil; c = c.next {
		if !c.closed.Load() && match(c) {
			c.closeBoth(false)
			n++
		}
	}
	return n
}

// sweep closes connections that moved no byte for IdleTimeout, checking every IdleTimeout/4. It re-reads
// IdleTimeout after every SetConfig: zero parks it until the next one.
func (s *server) sweep(ctx context.Context) {
	changed, unsubscribe := s.p.configChanged.Subscribe()
	defer unsubscribe()
	for {
		idle := s.p.config().IdleTimeout
		var tick <-chan time.Time
		var t *time.Ticker
		if idle > 0 {
			t = time.NewTicker(max(idle/4, time.Millisecond))
			tick = t.C
		}
		stop := func() {
			if t != nil {
				t.Stop()
			}
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				stop()
				return
			case <-changed:
				stop()
				break wait
			case now := <-tick:
				s.closeIdle(now.UnixNano(), int64(idle))
			}
		}
	}
}

func (s *server) closeIdle(now, idle int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeWhereLocked(func(c *conn) bool {
		if c.touched.Swap(false) || c.lastSeen == 0 {
			c.lastSeen = now // active since the last pass, or first seen: opened while IdleTimeout was 0
			return false
		}
		if now-c.lastSeen < idle {
			return false
		}
		s.p.log.Debug("idle timeout: closing connection", "backend", c.be.addr, "client", peer{c.client})
		return true
	})
}

// closeBackendAfter closes the connections to be (a retired backend) once grace has passed, from a
// goroutine of its own that ends then or when the server quits (after its drain), whichever comes first.
func (s *server) closeBackendAfter(be *backend, grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return // drained: nothing is open
	}
	s.closers.Go(func() {
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.quit:
			return
		}
		s.mu.Lock()
		be.closing.Store(true) // under s.mu: a conn that dialed be and is not tracked yet will not be
		n := s.closeWhereLocked(func(c *conn) bool { return c.be == be })
		s.mu.Unlock()
		if n > 0 {
			s.p.log.Info("closed the connections of a removed backend", "backend", be.addr, "closed", n, "grace", grace)
		}
		s.p.forgetBackend(be.addr)
	})
}
