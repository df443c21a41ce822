package proxy

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// server is the state of one Serve call: its listener, its reactors and the goroutines it started.
type server struct {
	p  *Proxy
	ln net.Listener

	// One reactor per P (GOMAXPROCS at Serve's start): each owns the connections handed to it. Reactor 0
	// accepts; see admit for who serves what it accepts.
	reactors []*reactor
	next     atomic.Uint32 // round-robin cursor of acceptLoop

	// dialCtx is cancelled when draining gives up, so dials by name in progress end too.
	dialCtx    context.Context
	cancelDial context.CancelFunc
	dialers    sync.WaitGroup // goroutines dialing a backend by name

	connWG sync.WaitGroup // accepted connections not yet ended: what drain waits for
	conns  atomic.Int64   // the same, as a number for logs

	acceptErr     chan error      // a permanent accept error: Serve stops
	stopAccepting chan struct{}   // closed when Serve stops accepting (ends acceptLoop's back-off)
	listenAddr    *netip.AddrPort // ln's address, refused by the loop guard while Serve runs

	accepting, loops, sweeper sync.WaitGroup // acceptLoop (listeners Serve cannot see through), reactors, sweeper
	stopSweep                 context.CancelFunc

	inherited    bool          // ln is a Listen listener: accepted sockets inherit lnKeepAlive and TCP_NODELAY
	lnKeepAlive  time.Duration // the keepalive a Listen listener passes on
	setNoDelay   bool          // accepted sockets need TCP_NODELAY set: raw accepts from a listener not made by Listen
	connDuration prometheus.Observer

	mu       sync.Mutex
	stopping bool          // drained: CloseBackend starts no more closers
	quit     chan struct{} // closed after the drain: closers end
	closers  sync.WaitGroup
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
	s, err := p.newServer(ln)
	if err != nil {
		_ = ln.Close()
		return err
	}
	defer s.close()
	s.start()
	select {
	case <-ctx.Done():
	case err = <-s.acceptErr:
	}
	s.stop()
	return err
}

// newServer prepares a Serve on ln: its reactors and its place among the proxy's servers. It starts nothing.
func (p *Proxy) newServer(ln net.Listener) (*server, error) {
	l, inherited := ln.(listener)
	s := &server{p: p, ln: ln, inherited: inherited, lnKeepAlive: l.keepAlive, connDuration: p.metrics.connDuration(),
		acceptErr: make(chan error, 1), stopAccepting: make(chan struct{}), quit: make(chan struct{})}
	s.dialCtx, s.cancelDial = context.WithCancel(context.Background())
	for i := range max(1, runtime.GOMAXPROCS(0)) {
		r, err := newReactor(s, i)
		if err != nil {
			s.cancelDial()
			s.closeReactors()
			return nil, err
		}
		s.reactors = append(s.reactors, r)
	}
	if a, ok := addrPortOf(ln.Addr()); ok {
		p.addListen(a)
		s.listenAddr = &a
	}
	p.mu.Lock()
	p.servers[s] = struct{}{}
	p.mu.Unlock()
	return s, nil
}

// start gives the listening socket to reactor 0 (or starts acceptLoop for a listener it cannot see
// through), then the reactors and the idle sweeper.
func (s *server) start() {
	if fd, ok := dupListener(s.ln); ok && s.reactors[0].listen(fd, s.ln.Addr().String()) == nil {
		s.setNoDelay = !s.inherited
	} else {
		if ok {
			rawClose(fd)
		}
		s.accepting.Go(s.acceptLoop)
	}
	for _, r := range s.reactors {
		s.loops.Go(r.run)
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	s.stopSweep = stopSweep
	s.sweeper.Go(func() { s.sweep(sweepCtx) })
}

// stop ends what start started, in order: accepting (no connection may be added while drain waits for the
// count to reach 0), the connections (drain), CloseBackend's closers, the sweeper, the dials by name (their
// results go to running reactors, which find the connections gone and close them), the reactors.
func (s *server) stop() {
	close(s.stopAccepting)
	s.reactors[0].do(func(r *reactor) { r.stopAccept() })
	_ = s.ln.Close()
	s.accepting.Wait()

	s.drain()
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	close(s.quit)
	s.closers.Wait()
	s.stopSweep()
	s.sweeper.Wait()
	s.cancelDial()
	s.dialers.Wait()
	for _, r := range s.reactors {
		r.post(message{fd: -1, fn: func(r *reactor) { r.stopped = true }})
	}
	s.loops.Wait()
}

// close releases what newServer took, once stop has returned.
func (s *server) close() {
	s.closeReactors()
	p := s.p
	if s.listenAddr != nil {
		p.removeListen(*s.listenAddr)
	}
	p.mu.Lock()
	delete(p.servers, s)
	p.mu.Unlock()
}

func (s *server) closeReactors() {
	for _, r := range s.reactors {
		r.close()
	}
	s.reactors = nil
}

// acceptFailed hands a permanent accept error to Serve, which stops.
func (s *server) acceptFailed(err error) {
	select {
	case s.acceptErr <- err:
	default:
	}
}

// admit applies MaxConns to an accepted client socket and queues it on a reactor. from is the accepting
// reactor, nil from acceptLoop (which deals round-robin).
//
// The accepting reactor keeps a connection when it can still dial it this round and holds no more
// connections than the least loaded other reactor (plus a slack); otherwise the least loaded other reactor
// gets it. So at a moderate rate one reactor serves everything and its rounds stay full (a reactor that
// sleeps between connections pays a trip through the scheduler and two epoll_waits per wake-up: dealing
// round-robin to two reactors at 10k conn/s cost 15% more CPU per connection than one reactor), while a
// burst the accepting reactor cannot dial at once, and long-lived connections piling up on it, spread over
// the others.
func (s *server) admit(from *reactor, fd int) {
	p := s.p
	if n, limit := p.open.Add(1), p.config().MaxConns; limit > 0 && n > int64(limit) {
		p.open.Add(-1)
		p.refusedMaxConns.Add(1)
		p.metrics.refusedInc(reasonMaxConns)
		p.log.Debug("connection refused: max connections", "client", peer{fd}, "max_conns", limit)
		rawReset(fd)
		return
	}
	s.connWG.Add(1)
	s.conns.Add(1)
	switch {
	case len(s.reactors) == 1:
		s.reactors[0].queueNew(fd, from)
	case from == nil:
		s.reactors[s.next.Add(1)%uint32(len(s.reactors))].queueNew(fd, from)
	default:
		other := s.leastLoaded(from)
		if len(from.newConns) < dialsPerRound && from.load.Load() <= other.load.Load()+spreadSlack {
			other = from
		}
		other.queueNew(fd, from)
	}
}

// spreadSlack is how many more connections than the least loaded other reactor the accepting reactor keeps
// before it hands new ones over.
const spreadSlack = 64

// leastLoaded returns the reactor other than not with the fewest connections.
func (s *server) leastLoaded(not *reactor) *reactor {
	var best *reactor
	for _, r := range s.reactors {
		if r != not && (best == nil || r.load.Load() < best.load.Load()) {
			best = r
		}
	}
	return best
}

// ended is the other half of admit's count.
func (s *server) ended() {
	s.conns.Add(-1)
	s.connWG.Done()
}

// drain waits up to DrainTimeout for connections to end, then closes the rest and waits for them.
func (s *server) drain() {
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	timeout := s.p.config().DrainTimeout
	if n := s.conns.Load(); n > 0 {
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
	n := 0
	for _, r := range s.reactors {
		r.do(func(r *reactor) { n += r.closeAll() })
	}
	s.p.log.Warn("drain timeout: closed open connections", "closed", n, "timeout", timeout)
	<-done
}

// closeWhere closes (FIN) the open connections for which match holds, on every reactor, and returns how
// many. match runs on the reactors' goroutines.
func (s *server) closeWhere(match func(*conn) bool) int {
	n := 0
	for _, r := range s.reactors {
		r.do(func(r *reactor) { n += r.closeWhere(match) })
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
				for _, r := range s.reactors {
					r.do(func(r *reactor) { r.closeIdle(now.UnixNano(), int64(idle)) })
				}
			}
		}
	}
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
		// First the mark, then the sweep: a dial to be that completes on a reactor after the sweep passed it
		// sees the mark and closes its connection at once.
		be.closing.Store(true)
		n := s.closeWhere(func(c *conn) bool { return c.be == be })
		if n > 0 {
			s.p.log.Info("closed the connections of a removed backend", "backend", be.addr, "closed", n, "grace", grace)
		}
		s.p.forgetBackend(be.addr)
	})
}
