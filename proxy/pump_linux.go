package proxy

import (
	"sync"

	"golang.org/x/sys/unix"
)

// flushEvery bounds how many bytes a busy direction moves before it publishes them to stats and metrics,
// so a long bulk transfer shows progress without an atomic add per splice.
const flushEvery = 4 << 20

// copyBufSize is the reactor's receive buffer for directions that copy. Like HAProxy's splice-auto, small
// messages (a request, a short reply, most TLS records) go recv/send through user space: two calls instead
// of two splices plus the pipe's page bookkeeping. A read that fills the buffer marks a bulk transfer, and
// from then on the direction splices, so large bodies and watch streams stay zero-copy.
const copyBufSize = 16 << 10

// moveRounds bounds the reads one direction makes per turn (16 × 64 KiB splices = 1 MiB), so one busy
// connection cannot starve the others of its reactor; a direction stopped by the bound continues next round.
const moveRounds = 16

// copyBuf holds bytes a direction read but its destination did not take yet. Directions borrow one only then
// (the reactor's scratch buffer serves every read), so an idle or flowing connection holds none.
type copyBuf [copyBufSize]byte

var copyBufs = sync.Pool{New: func() any { return new(copyBuf) }}

// pump is one direction of a connection, src to dst, as a state machine its reactor drives. Events set what
// a socket may do (readable, writable); a read or write that finds it cannot clears it again, and the next
// edge-triggered event sets it. A direction reads only when it has nothing pending, so a slow destination
// holds back its source (the kernel's buffers, not ours, absorb the difference).
//
// Bytes go through the reactor's scratch buffer (recv, then send at once) until one read fills it; then
// through a pipe borrowed from the proxy's pool (splice in, splice out) held only while bytes are in it. A
// pipe or a buffer is never kept by an idle direction.
type pump struct {
	src, dst int
	upstream bool     // client to backend
	be       *backend // whose stats the bytes count in

	readable bool // src may have bytes, an end or an error to report
	rdhup    bool // src reported its peer's FIN: once a short read has emptied it, the stream has ended
	writable bool // dst may take bytes
	eof      bool // src ended
	done     bool // the end was passed on, or the connection ended
	splicing bool // a read filled the scratch buffer: bulk, move with splice from now on
	active   bool // bytes moved since service last looked (the idle sweeper's signal)

	buf     *copyBuf // bytes dst did not take yet, from buf[off:off+n]; nil when none
	off, n  int
	pipe    pipe
	hasPipe bool
	inPipe  int    // bytes in the pipe not yet spliced to dst
	moved   uint64 // bytes delivered, not yet published
}

// start prepares the direction once both sockets are connected. Readiness already reported stays.
func (d *pump) start(src, dst int, upstream bool, be *backend) {
	d.src, d.dst, d.upstream, d.be = src, dst, upstream, be
	d.writable = true // a fresh connection has room; the first short write says otherwise
}

// srcEvent records an event of the source socket.
func (d *pump) srcEvent(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		d.readable = true
	}
	if ev&unix.EPOLLRDHUP != 0 && ev&unix.EPOLLERR == 0 {
		d.rdhup = true
	}
}

// dstEvent records an event of the destination socket. An error or hang-up makes it "writable": the next
// write reports what happened.
func (d *pump) dstEvent(ev uint32) {
	if ev&(unix.EPOLLOUT|unix.EPOLLERR|unix.EPOLLHUP) != 0 {
		d.writable = true
	}
}

func (d *pump) pending() bool { return d.n > 0 || d.inPipe > 0 }

// ended reports a direction whose source ended and whose bytes are all delivered: its end can be passed on.
func (d *pump) ended() bool { return d.eof && !d.pending() && !d.done }

// move moves bytes until the source is empty, the destination full, the source ended, or the turn's bound
// is reached; then more says whether it stopped with something left to do. An error (reset, broken pipe, no
// pipe to be had) aborts the connection.
func (d *pump) move(r *reactor) (more bool, err error) {
	for range moveRounds {
		if d.pending() {
			if !d.writable {
				return false, nil // dst is full: its next event continues
			}
			if err := d.flush(r.p.pipes); err != nil {
				return false, err
			}
			if d.pending() {
				return false, nil
			}
		}
		if d.eof || !d.readable {
			return false, nil
		}
		if d.splicing {
			err = d.spliceIn(r)
		} else {
			err = d.copyIn(r)
		}
		if err != nil {
			return false, err
		}
		if d.moved >= flushEvery {
			d.publish()
		}
	}
	return d.readable || (d.pending() && d.writable), nil
}

// copyIn reads what src has into the scratch buffer and sends it on at once; what dst does not take is
// kept in a borrowed buffer until it does.
func (d *pump) copyIn(r *reactor) error {
	b := r.scratch[:]
	n, err := rawRecv(d.src, b)
	switch err {
	case nil:
	case unix.EAGAIN:
		d.readable = false
		d.publish()
		return nil
	case unix.EINTR:
		return nil
	default:
		return err
	}
	if n == 0 {
		d.eof, d.readable = true, false
		return nil
	}
	if n < len(b) {
		// A short read took everything queued (a TCP read stops only when the queue is empty): the next
		// bytes bring a new event, so no read to see EAGAIN. And if the peer's FIN was in before this read,
		// these were the last bytes: no read to see the 0 either. Two system calls fewer per message.
		d.readable = false
		if d.rdhup {
			d.eof = true
		}
	} else {
		d.splicing = true // bulk: these bytes are copied, the next read splices
	}
	sent, err := d.send(b[:n])
	if err != nil {
		return err
	}
	if sent < n {
		d.buf = copyBufs.Get().(*copyBuf)
		d.off, d.n = 0, copy(d.buf[:], b[sent:n])
	}
	if !d.readable {
		d.publish()
	}
	return nil
}

// send writes b to dst once; a short write means dst is full. The last bytes of a stream whose end is
// known go with MSG_MORE: the shutdown or close that follows at once adds the FIN to their segment instead
// of sending a segment of its own. One packet fewer per connection (on loopback the peer's receive path runs
// in the sender's system call, so that is a whole transmit and receive off the proxy's CPU), same bytes.
func (d *pump) send(b []byte) (int, error) {
	for {
		n, err := rawSend(d.dst, b, d.eof)
		switch err {
		case nil:
			if n < len(b) {
				d.writable = false
			}
			d.moved += uint64(n)
			d.active = true
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			d.writable = false
			return 0, nil
		default:
			return 0, err
		}
	}
}

// spliceIn moves what src has into a pipe and from there to dst. The pipe goes back to the pool as soon as
// src is empty (the pipe is then empty too: src is read only when nothing is pending).
func (d *pump) spliceIn(r *reactor) error {
	pool := r.p.pipes
	if !d.hasPipe {
		p, err := pool.get()
		if err != nil {
			return err
		}
		d.pipe, d.hasPipe = p, true
	}
	n, err := rawSplice(d.src, d.pipe.w, r.p.chunk)
	switch err {
	case nil:
	case unix.EAGAIN:
		d.readable = false
		pool.put(d.pipe)
		d.hasPipe = false
		d.publish()
		return nil
	case unix.EINTR:
		return nil
	default:
		return err
	}
	if n == 0 {
		d.eof, d.readable = true, false
		return nil
	}
	d.inPipe = n
	return d.flush(pool)
}

// flush delivers pending bytes until none are left or dst is full.
func (d *pump) flush(pool *pipePool) error {
	for d.pending() {
		var n int
		var err error
		want := d.inPipe
		if d.buf != nil {
			want = d.n
			n, err = rawSend(d.dst, d.buf[d.off:d.off+d.n], d.eof)
		} else {
			n, err = rawSplice(d.pipe.r, d.dst, d.inPipe)
		}
		switch err {
		case nil:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			d.writable = false
			return nil
		default:
			return err
		}
		d.moved += uint64(n)
		d.active = true
		if d.buf != nil {
			d.off += n
			if d.n -= n; d.n == 0 {
				copyBufs.Put(d.buf) // stale bytes are harmless: only bytes a recv just wrote are ever sent
				d.buf = nil
			}
		} else {
			d.inPipe -= n
		}
		if n < want {
			d.writable = false // dst took what fitted
			return nil
		}
	}
	return nil
}

// finish ends the direction: borrowed buffer and pipe go back (a pipe that may hold bytes is closed
// instead), the bytes moved are published. Safe to call more than once.
func (d *pump) finish(pool *pipePool) {
	if d.buf != nil {
		copyBufs.Put(d.buf)
		d.buf, d.n = nil, 0
	}
	if d.hasPipe {
		if d.inPipe == 0 {
			pool.put(d.pipe)
		} else {
			pool.discard(d.pipe)
		}
		d.hasPipe, d.inPipe = false, 0
	}
	d.publish()
	d.done = true
}

// publish adds the bytes moved since the last publish to the backend's stats and metrics.
func (d *pump) publish() {
	if d.moved == 0 {
		return
	}
	be := d.be
	if d.upstream {
		be.bytesUp.Add(d.moved)
		add(be.m.bytesUp, d.moved)
	} else {
		be.bytesDown.Add(d.moved)
		add(be.m.bytesDown, d.moved)
	}
	d.moved = 0
}
