package proxy

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A reactor is one goroutine that owns a set of proxied connections and everything about them: their two
// sockets sit in the reactor's own epoll set (edge-triggered), and only the reactor reads, writes, shuts
// down or closes them, with raw system calls. No connection has a goroutine of its own, no socket is an
// *os.File or a net.Conn, and none is in the Go poller, so a connection costs no goroutine switch, no
// poller registration and no notified system call (see rawsys_linux.go for why those matter).
//
// The reactor sleeps in the Go poller, not in the kernel: its epoll fd is registered there (one *os.File),
// so while it has nothing to do its goroutine parks like any socket reader and its P runs other goroutines
// (health checks, Raft). Timers (connect timeouts, an accept back-off) are that file's read deadline.
//
// Other goroutines never touch a reactor's connections: they post a message (an accepted socket from the
// accepting reactor, the result of a dial by host name, a control function such as "close the idle ones")
// and wake it through an eventfd in its set. Events identify a connection by slot and generation, never by
// pointer, so an event or a posted result that arrives after its connection ended finds nothing.
type reactor struct {
	s  *server
	p  *Proxy
	id int

	epfd   int
	ep     *os.File // epfd in the Go poller: where the goroutine sleeps
	rc     syscall.RawConn
	wakefd int // eventfd in the set: posting goroutines write it to wake a sleeping reactor

	events  [256]unix.EpollEvent
	nready  int
	pollFn  func(fd uintptr) bool
	scratch *copyBuf // receive buffer of every direction still copying: bytes are sent before the next read

	slots   []*conn // live connections by slot; nil = free
	free    []int32
	nextGen uint32

	dialing    conn         // sentinel of the list of connects in progress (their timeouts)
	newConns   []int        // accepted client sockets waiting for their dial, oldest first (see dialsPerRound)
	load       atomic.Int64 // connections queued on or owned by this reactor, for admit
	again      []connRef    // connections that stopped with bytes left to move (fairness): serviced next round
	againSpare []connRef
	kaPending  []connRef // connections whose keepalive the next keepalive pass sets
	kaDue      int64     // unix nanos of that pass; 0 none
	armed      int64     // read deadline set on ep, unix nanos; 0 none
	stale      bool      // ep's deadline passed: reads fail until arm sets or clears it
	acc        *acceptor // the listening socket, on the reactor that accepts (nil on the others)
	closing    bool      // the drain gave up: a connection that finishes dialing is closed at once
	stopped    bool      // run returns after this round

	mu       sync.Mutex
	inbox    []message
	spare    []message
	hasMail  atomic.Bool
	sleeping atomic.Bool
}

// message is what other goroutines hand a reactor: an accepted client socket (fd >= 0) or a function to
// run on the reactor's goroutine (fn), whose end done, when not nil, signals.
type message struct {
	fd   int
	fn   func(r *reactor)
	done chan struct{}
}

// Tokens in an epoll event's data: a connection's slot in Fd; in Pad its generation shifted left by one and
// the side (0 client, 1 backend) in the low bit. Negative slots name the reactor's own descriptors.
const (
	tokenWake   = -1
	tokenListen = -2
)

// edgeEvents is what a proxied socket is registered for, once: readable, writable, and the peer's FIN or
// reset. Edge-triggered, so a socket reports a change once and never again until the next one; the reactor
// keeps what it learned in the directions' readable/writable flags.
const edgeEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func newReactor(s *server, id int) (*reactor, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: tokenWake}
	if err := rawEpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl wake fd: %w", err)
	}
	// Non-blocking, so os.NewFile registers it with the Go poller.
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakefd)
		return nil, fmt.Errorf("epoll fd non-blocking: %w", err)
	}
	ep := os.NewFile(uintptr(epfd), "proxy-reactor-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		_ = ep.Close()
		_ = unix.Close(wakefd)
		return nil, err
	}
	r := &reactor{s: s, p: s.p, id: id, epfd: epfd, ep: ep, rc: rc, wakefd: wakefd, scratch: new(copyBuf)}
	r.dialing.dnext, r.dialing.dprev = &r.dialing, &r.dialing
	r.pollFn = r.poll
	return r, nil
}

// run is the reactor's goroutine: wait for events, handle them, read the mail, fire due timers, continue
// connections left with work, until a stop message.
func (r *reactor) run() {
	for !r.stopped {
		n := r.wait()
		for i := range n {
			r.dispatch(&r.events[i])
		}
		if r.hasMail.Load() {
			r.readMail()
		}
		if len(r.newConns) > 0 {
			r.adoptNew()
		}
		if r.armed != 0 && time.Now().UnixNano() >= r.armed {
			r.expire()
		}
		if len(r.again) > 0 {
			r.continueAgain()
		}
	}
}

// close releases the reactor's descriptors. Every connection has ended (Serve drained) before.
func (r *reactor) close() {
	_ = r.ep.Close()
	rawClose(r.wakefd)
}

// wait returns the number of events in r.events. With work left over it only looks; otherwise it sleeps
// in the Go poller until an event, a message or the next deadline.
func (r *reactor) wait() int {
	if len(r.again) > 0 || len(r.newConns) > 0 {
		return rawEpollWait(r.epfd, r.events[:])
	}
	r.arm()
	r.nready = 0
	err := r.rc.Read(r.pollFn)
	r.sleeping.Store(false)
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		// Only close closes ep, after run returned: this cannot happen. Stop rather than spin.
		r.p.log.Error("proxy reactor: epoll file failed", "reactor", r.id, "err", err)
		r.stopped = true
	}
	return r.nready
}

// poll runs inside ep's RawConn.Read: take what is ready, or go to sleep (false) after announcing it, so a
// poster that comes after the mail check below writes the wake fd.
func (r *reactor) poll(uintptr) bool {
	if n := rawEpollWait(r.epfd, r.events[:]); n > 0 {
		r.nready = n
		return true
	}
	r.sleeping.Store(true)
	return r.hasMail.Load() // mail posted before sleeping was set: its poster did not wake us
}

// dispatch routes one event to its connection, or to the reactor's own descriptors.
func (r *reactor) dispatch(ev *unix.EpollEvent) {
	slot := ev.Fd
	switch {
	case slot == tokenWake:
		var b [8]byte
		rawRead(r.wakefd, b[:])
		return
	case slot == tokenListen:
		if r.acc != nil {
			r.accept()
		}
		return
	}
	c := r.lookup(slot, uint32(ev.Pad)>>1)
	if c == nil {
		return // the connection ended, or this event was for an earlier attempt's socket
	}
	if ev.Pad&1 == 1 {
		r.backendEvent(c, ev.Events)
	} else {
		r.clientEvent(c, ev.Events)
	}
}

// connRef names a connection across rounds and goroutines: a slot and the generation it had. It never goes
// stale into a wrong connection, as a *conn could once the pool recycled it (even to another reactor).
type connRef struct {
	slot int32
	gen  uint32
}

// lookup returns the live connection of slot if it still has generation gen.
func (r *reactor) lookup(slot int32, gen uint32) *conn {
	if slot < 0 || int(slot) >= len(r.slots) {
		return nil
	}
	if c := r.slots[slot]; c != nil && c.gen == gen {
		return c
	}
	return nil
}

// queue puts c on the list serviced next round.
func (r *reactor) queue(c *conn) {
	if !c.queued {
		c.queued = true
		r.again = append(r.again, connRef{c.slot, c.gen})
	}
}

// register adds fd to the set for c's side.
func (r *reactor) register(c *conn, fd int, backend bool) error {
	ev := unix.EpollEvent{Events: edgeEvents, Fd: c.slot, Pad: c.token(backend)}
	return rawEpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

// newGeneration gives c a new generation, so events still queued for a socket it closed (an earlier
// connect attempt) match nothing, and re-registers its client socket under it.
func (r *reactor) newGeneration(c *conn) {
	r.nextGen++
	c.gen = r.nextGen & (1<<31 - 1)
	ev := unix.EpollEvent{Events: edgeEvents, Fd: c.slot, Pad: c.token(false)}
	_ = rawEpollCtl(r.epfd, unix.EPOLL_CTL_MOD, c.client, &ev)
}

// addConn takes a slot for a new connection on client socket fd.
func (r *reactor) addConn(fd int) *conn {
	c := r.p.conns.Get().(*conn)
	if n := len(r.free); n > 0 {
		c.slot = r.free[n-1]
		r.free = r.free[:n-1]
	} else {
		c.slot = int32(len(r.slots))
		r.slots = append(r.slots, nil)
	}
	r.nextGen++
	c.gen = r.nextGen & (1<<31 - 1)
	c.r, c.client, c.backend = r, fd, -1
	r.slots[c.slot] = c
	return c
}

// removeConn frees c's slot and recycles c.
func (r *reactor) removeConn(c *conn) {
	r.slots[c.slot] = nil
	r.free = append(r.free, c.slot)
	c.clear()
	r.p.conns.Put(c)
}

// post hands m to r from another goroutine and wakes r if it sleeps.
func (r *reactor) post(m message) {
	r.mu.Lock()
	r.inbox = append(r.inbox, m)
	r.mu.Unlock()
	r.hasMail.Store(true)
	if r.sleeping.CompareAndSwap(true, false) { // one wake per sleep, however many posts
		r.wake()
	}
}

// wake makes r's set readable, which ends its sleep in the Go poller.
func (r *reactor) wake() {
	one := [8]byte{1} // a native-endian uint64 1 on little-endian machines; any non-zero value wakes
	rawWrite(r.wakefd, one[:])
}

// do runs fn on r's goroutine and waits until it has run. r must be running.
func (r *reactor) do(fn func(r *reactor)) {
	done := make(chan struct{})
	r.post(message{fd: -1, fn: fn, done: done})
	<-done
}

// readMail handles what other goroutines posted.
func (r *reactor) readMail() {
	r.mu.Lock()
	r.hasMail.Store(false)
	mail := r.inbox
	r.inbox = r.spare[:0]
	r.mu.Unlock()
	for i := range mail {
		m := &mail[i]
		if m.fn != nil {
			m.fn(r)
			if m.done != nil {
				close(m.done)
			}
		} else {
			r.newConns = append(r.newConns, m.fd)
		}
		*m = message{}
	}
	r.spare = mail[:0]
}

// arm sets ep's read deadline to the earliest timer: the first connect timeout, the end of an accept
// back-off, the keepalive pass. A deadline already armed earlier than needed stays (its wake-up finds
// nothing due and re-arms), so steady traffic sets it about once a second, not once per connection.
func (r *reactor) arm() {
	want := r.nextDeadline()
	if !r.stale && (r.armed == want || (r.armed != 0 && (want == 0 || r.armed <= want))) {
		return
	}
	var t time.Time
	if want != 0 {
		t = time.Unix(0, want)
	}
	if err := r.ep.SetReadDeadline(t); err != nil {
		return
	}
	r.armed, r.stale = want, false
}

// nextDeadline is the earliest timer, 0 when none.
func (r *reactor) nextDeadline() int64 {
	next := int64(0)
	for c := r.dialing.dnext; c != &r.dialing; c = c.dnext {
		if c.dial.deadline != 0 && (next == 0 || c.dial.deadline < next) {
			next = c.dial.deadline
		}
	}
	if a := r.acc; a != nil && a.pausedUntil != 0 && (next == 0 || a.pausedUntil < next) {
		next = a.pausedUntil
	}
	if r.kaDue != 0 && (next == 0 || r.kaDue < next) {
		next = r.kaDue
	}
	return next
}

// expire fires every due timer.
func (r *reactor) expire() {
	now := time.Now().UnixNano()
	for c := r.dialing.dnext; c != &r.dialing; {
		next := c.dnext
		if c.dial.deadline != 0 && c.dial.deadline <= now {
			r.connectTimedOut(c)
		}
		c = next
	}
	if a := r.acc; a != nil && a.pausedUntil != 0 && a.pausedUntil <= now {
		r.resumeAccept()
	}
	if r.kaDue != 0 && r.kaDue <= now {
		r.setKeepAlives()
	}
	// The deadline passed: ep's reads fail until it is set again, so arm must set or clear it.
	r.armed, r.stale = 0, true
}

// continueAgain services the connections that stopped with bytes left, once each this round.
func (r *reactor) continueAgain() {
	again := r.again
	r.again, r.againSpare = r.againSpare[:0], nil
	for _, ref := range again {
		c := r.lookup(ref.slot, ref.gen)
		if c == nil || !c.queued {
			continue // ended meanwhile
		}
		c.queued = false
		r.service(c)
	}
	r.againSpare = again[:0]
}

// queueNew queues an accepted client socket on r, from the accepting reactor from (nil: acceptLoop).
func (r *reactor) queueNew(fd int, from *reactor) {
	r.load.Add(1)
	if r == from {
		r.newConns = append(r.newConns, fd)
		return
	}
	r.post(message{fd: fd})
}

// adoptNew starts the dials of up to dialsPerRound queued client sockets.
func (r *reactor) adoptNew() {
	n := min(len(r.newConns), dialsPerRound)
	for _, fd := range r.newConns[:n] {
		r.adopt(fd)
	}
	r.newConns = r.newConns[:copy(r.newConns, r.newConns[n:])]
}

// refuseNew resets the client sockets still queued (the drain gave up on them).
func (r *reactor) refuseNew() int {
	n := len(r.newConns)
	for _, fd := range r.newConns {
		rawReset(fd)
		r.load.Add(-1)
		r.p.open.Add(-1)
		r.s.ended()
	}
	r.newConns = r.newConns[:0]
	return n
}

// forEach calls f for every live connection. f may end the connection it is given.
func (r *reactor) forEach(f func(c *conn)) {
	for _, c := range r.slots {
		if c != nil {
			f(c)
		}
	}
}
