package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// Warm spare connections. An authenticated connection costs a TLS handshake and a key proof (about 1.5 ms
// of CPU and wall time on loopback, BenchmarkHandshake), and the moments raft dials a new connection are
// the ones that must be fast: a candidate asking a peer it never spoke to for a vote (followers do not talk
// to each other), a new leader opening replication. So the dialer keeps one authenticated, idle connection
// to every other voter, made in the background; Dial hands a live spare over at once and makes a new one
// behind it. A watcher reads each idle spare, so a peer that restarted or closed it is noticed and the spare
// replaced, and a spare older than spareMaxAge is replaced, so key and certificate rotations reach spares too.
const (
	spareMaxAge      = 5 * time.Minute
	spareRetryMin    = time.Second
	spareRetryMax    = 30 * time.Second
	spareDialTimeout = 2 * time.Second
)

// spare is one idle authenticated connection and the goroutine watching it.
type spare struct {
	conn    net.Conn
	made    time.Time
	stop    chan struct{} // closed to take the spare: the watcher returns without closing conn
	stopped chan struct{} // closed when the watcher returned
	dead    bool          // set by the watcher (under spares.mu) when the peer closed it
}

// spares keeps one spare connection per wanted address.
type spares struct {
	dial   func(ctx context.Context, addr string) (net.Conn, error) // an authenticated dial
	ctx    context.Context                                          // ends background dials at close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	want    map[string]bool
	idle    map[string]*spare
	dialing map[string]bool
	retry   map[string]time.Time     // no dial before this time (after a failure)
	backoff map[string]time.Duration // current backoff per address
	wg      sync.WaitGroup
}

func newSpares(dial func(ctx context.Context, addr string) (net.Conn, error)) *spares {
	ctx, cancel := context.WithCancel(context.Background())
	return &spares{dial: dial, ctx: ctx, cancel: cancel, want: map[string]bool{}, idle: map[string]*spare{}, dialing: map[string]bool{},
		retry: map[string]time.Time{}, backoff: map[string]time.Duration{}}
}

// keep sets the addresses to keep a spare for, drops spares of others, and starts the dials that are due.
func (s *spares) keep(addrs []string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.want = map[string]bool{}
	for _, a := range addrs {
		s.want[a] = true
	}
	for a, sp := range s.idle {
		if !s.want[a] || sp.dead || now.Sub(sp.made) > spareMaxAge {
			delete(s.idle, a)
			s.discardLocked(sp)
		}
	}
	for a := range s.backoff {
		if !s.want[a] {
			delete(s.backoff, a)
			delete(s.retry, a)
		}
	}
	s.refillAllLocked()
}

// refillAllLocked starts the next due spare dial, if any.
func (s *spares) refillAllLocked() {
	now := time.Now()
	for a := range s.want {
		s.refillLocked(a, now)
	}
}

// take returns the live spare for addr, if any, and starts making the next one.
func (s *spares) take(addr string) net.Conn {
	s.mu.Lock()
	sp := s.idle[addr]
	if sp == nil || sp.dead {
		s.mu.Unlock()
		return nil
	}
	delete(s.idle, addr)
	s.refillLocked(addr, time.Now())
	s.mu.Unlock()
	// Stop the watcher without consuming anything: a read deadline in the past ends its Read.
	close(sp.stop)
	sp.conn.SetReadDeadline(time.Unix(1, 0))
	<-sp.stopped
	s.mu.Lock()
	dead := sp.dead
	s.mu.Unlock()
	if dead {
		sp.conn.Close()
		return nil
	}
	sp.conn.SetReadDeadline(time.Time{})
	return sp.conn
}

// refillLocked starts a background dial for addr if it is wanted, has no spare, none is being made, its
// retry time has come, and no other spare is being made: spares are made one at a time, so they never add a
// burst of handshakes to the moments raft makes its own connections (a cluster forming, an election).
func (s *spares) refillLocked(addr string, now time.Time) {
	if s.closed || !s.want[addr] || s.idle[addr] != nil || len(s.dialing) > 0 || now.Before(s.retry[addr]) {
		return
	}
	s.dialing[addr] = true
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, spareDialTimeout)
		conn, err := s.dial(ctx, addr)
		cancel()
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.dialing, addr)
		defer s.refillAllLocked() // the next address's turn
		if err != nil {
			b := min(max(2*s.backoff[addr], spareRetryMin), spareRetryMax)
			s.backoff[addr], s.retry[addr] = b, time.Now().Add(b)
			return
		}
		delete(s.backoff, addr)
		delete(s.retry, addr)
		if s.closed || !s.want[addr] || s.idle[addr] != nil {
			conn.Close()
			return
		}
		sp := &spare{conn: conn, made: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
		s.idle[addr] = sp
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.watch(addr, sp) }()
	}()
}

// watch reads the idle spare: a peer sends nothing on an idle Raft connection (TLS session tickets are
// handled inside Read), so any return but our own deadline means the spare is dead.
func (s *spares) watch(addr string, sp *spare) {
	defer close(sp.stopped)
	var buf [1]byte
	_, err := sp.conn.Read(buf[:])
	select {
	case <-sp.stop:
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return // taken
		}
	default:
	}
	s.mu.Lock()
	sp.dead = true
	if s.idle[addr] == sp {
		delete(s.idle, addr)
		s.refillLocked(addr, time.Now())
	}
	s.mu.Unlock()
	sp.conn.Close()
}

// discardLocked closes an idle spare; its watcher notices and ends.
func (s *spares) discardLocked(sp *spare) {
	sp.dead = true
	sp.conn.Close()
}

// close closes every spare and waits for the dials and watchers.
func (s *spares) close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for a, sp := range s.idle {
		delete(s.idle, a)
		s.discardLocked(sp)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
