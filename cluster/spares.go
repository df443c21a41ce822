package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"time"
)

// Warm spare connections. An authenticated connection costs a TLS handshake and a key proof (about 1.5 ms
// of CPU and wall time on loopback, BenchmarkHandshake), and the moments raft dials new connections are the
// ones that must be fast: a candidate asking a peer it never spoke to for a vote (followers do not talk to
// each other), a new leader opening heartbeats, replication and its pipeline to every follower. So the
// dialer keeps sparesPerPeer authenticated, idle connections to every other voter, made in the background;
// Dial hands a live spare over at once. Spares are made one at a time and not in the second after one was
// taken, so making them never competes for CPU with an election. A watcher reads each idle spare, so a peer
// that restarted or closed it is noticed and the spare replaced; a spare older than spareMaxAge is replaced,
// so key and certificate rotations reach spares too.
const (
	// sparesPerPeer covers a new leader's connections to a follower beyond the one its vote request left in
	// raft's pool: heartbeats and replication (then its pipeline).
	sparesPerPeer    = 2
	spareMaxAge      = 5 * time.Minute
	spareRefillDelay = time.Second
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
	dead    bool          // set (under spares.mu) when the peer closed it or it was discarded
}

// spares keeps sparesPerPeer spare connections per wanted address.
type spares struct {
	dial   func(ctx context.Context, addr string) (net.Conn, error) // an authenticated dial
	ctx    context.Context                                          // ends background dials at close
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	want    map[string]bool
	idle    map[string][]*spare
	dialing map[string]bool          // at most one address at a time
	retry   map[string]time.Time     // no dial to the address before this time
	backoff map[string]time.Duration // current failure backoff per address
	wg      sync.WaitGroup
}

func newSpares(dial func(ctx context.Context, addr string) (net.Conn, error)) *spares {
	ctx, cancel := context.WithCancel(context.Background())
	return &spares{dial: dial, ctx: ctx, cancel: cancel, want: map[string]bool{}, idle: map[string][]*spare{},
		dialing: map[string]bool{}, retry: map[string]time.Time{}, backoff: map[string]time.Duration{}}
}

// keep sets the addresses to keep spares for, drops the spares of others and those older than spareMaxAge
// at now, and starts the next dial that is due.
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
	for a, list := range s.idle {
		s.idle[a] = slices.DeleteFunc(list, func(sp *spare) bool {
			drop := !s.want[a] || sp.dead || now.Sub(sp.made) > spareMaxAge
			if drop {
				s.discardLocked(sp)
			}
			return drop
		})
		if len(s.idle[a]) == 0 {
			delete(s.idle, a)
		}
	}
	for a := range s.retry {
		if !s.want[a] {
			delete(s.retry, a)
			delete(s.backoff, a)
		}
	}
	s.refillLocked()
}

// take returns a live spare for addr, if any.
func (s *spares) take(addr string) net.Conn {
	for {
		s.mu.Lock()
		list := s.idle[addr]
		if len(list) == 0 {
			s.mu.Unlock()
			return nil
		}
		sp := list[len(list)-1]
		s.idle[addr] = list[:len(list)-1]
		// Raft is making connections now: let it have the CPU, refill later.
		s.retry[addr] = maxTime(s.retry[addr], time.Now().Add(spareRefillDelay))
		s.mu.Unlock()
		// Stop the watcher without consuming anything: a read deadline in the past ends its Read.
		close(sp.stop)
		sp.conn.SetReadDeadline(time.Unix(1, 0))
		<-sp.stopped
		s.mu.Lock()
		dead := sp.dead
		s.mu.Unlock()
		if !dead {
			sp.conn.SetReadDeadline(time.Time{})
			return sp.conn
		}
		sp.conn.Close()
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// refillLocked starts one background dial, to the first wanted address that lacks spares and whose retry
// time has come, unless a dial is already running: spares are made one at a time.
func (s *spares) refillLocked() {
	if s.closed || len(s.dialing) > 0 {
		return
	}
	now := time.Now()
	for addr := range s.want {
		if len(s.idle[addr]) < sparesPerPeer && !now.Before(s.retry[addr]) {
			s.dialLocked(addr)
			return
		}
	}
}

func (s *spares) dialLocked(addr string) {
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
		defer s.refillLocked() // the next spare's turn
		if err != nil {
			b := min(max(2*s.backoff[addr], spareRetryMin), spareRetryMax)
			s.backoff[addr], s.retry[addr] = b, time.Now().Add(b)
			return
		}
		delete(s.backoff, addr)
		if s.closed || !s.want[addr] || len(s.idle[addr]) >= sparesPerPeer {
			conn.Close()
			return
		}
		sp := &spare{conn: conn, made: time.Now(), stop: make(chan struct{}), stopped: make(chan struct{})}
		s.idle[addr] = append(s.idle[addr], sp)
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.watch(addr, sp) }()
	}()
}

// watch reads the idle spare: a peer sends nothing on an idle Raft connection, so any return but our own
// deadline means the spare is dead.
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
	if i := slices.Index(s.idle[addr], sp); i >= 0 {
		s.idle[addr] = slices.Delete(s.idle[addr], i, i+1)
		s.refillLocked()
	}
	s.mu.Unlock()
	sp.conn.Close()
}

// discardLocked closes an idle spare; its watcher notices and ends.
func (s *spares) discardLocked(sp *spare) {
	sp.dead = true
	sp.conn.Close()
}

// count is the number of idle spares for addr.
func (s *spares) count(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle[addr])
}

// close closes every spare and waits for the dials and watchers.
func (s *spares) close() {
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for a, list := range s.idle {
		delete(s.idle, a)
		for _, sp := range list {
			s.discardLocked(sp)
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}
