package proxy

import (
	"errors"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// flushEvery bounds how many bytes a busy direction moves before it publishes them to stats and metrics,
// so a long bulk transfer shows progress without an atomic add per splice.
const flushEvery = 4 << 20

// copyBufSize is the buffer a direction copies through until one read fills it. Like HAProxy's splice-auto,
// small messages (a request, a short reply, most TLS records) go recv/send through user space: two calls
// instead of two splices plus the pipe's page bookkeeping. A read that fills the buffer marks a bulk
// transfer, and from then on the direction splices, so large bodies and watch streams stay zero-copy.
const copyBufSize = 16 << 10

// copyBuf is a pooled copy buffer; a direction holds one only while bytes are in flight, like a pipe.
type copyBuf [copyBufSize]byte

var copyBufs = sync.Pool{New: func() any { return new(copyBuf) }}

// pump moves one direction of a connection, src to dst: first by copying through a small pooled buffer,
// then, once a read fills the buffer, with splice(2) through a pipe borrowed from the proxy's pool; either
// is held only while bytes are in flight.
//
// The wait for data happens inside src's RawConn.Read: the callback borrows a pipe and splices; when the
// socket has nothing (EAGAIN) it hands the pipe back and returns false, so the Go netpoller parks the
// goroutine holding nothing but the two sockets. Bytes in the pipe are then spliced into dst inside dst's
// RawConn.Write callback, which parks on a full socket buffer. The pipe is always empty when the next read
// starts, so a pipe put back in the pool never carries stale bytes; after an error it is closed instead.
type pump struct {
	c        *conn
	upstream bool // client to backend
	srcRC    syscall.RawConn
	dstRC    syscall.RawConn

	splicing bool     // a read filled buf: move bytes with splice from now on
	buf      *copyBuf // borrowed copy buffer (not splicing), nil while parked
	off      int      // start of the unwritten bytes in buf
	pipe     pipe
	hasPipe  bool
	buffered int    // bytes in pipe or buf not yet written to dst
	n        int    // result of the last read callback
	err      error  // error of the last callback
	moved    uint64 // bytes written to dst, not yet published

	// Bound once per pooled conn so RawConn calls do not allocate closures.
	readFn, writeFn func(fd uintptr) bool
	shutdownFn      func(fd uintptr)

	parkIdle bool // on an empty src, return errParked instead of parking the goroutine (downstream)
	parked   bool // the last read found src empty and parkIdle is set
}

// errParked: src is empty and the direction goes to the server's idle set instead of parking a goroutine.
var errParked = errors.New("direction parked in the idle set")

func (d *pump) bind() {
	d.readFn = d.onReadable
	d.writeFn = d.onWritable
	d.shutdownFn = func(fd uintptr) { _ = rawShutdown(int(fd), unix.SHUT_WR) }
}

// reset prepares d for a new connection.
func (d *pump) reset(c *conn, upstream bool, srcRC, dstRC syscall.RawConn) {
	d.c, d.upstream, d.srcRC, d.dstRC = c, upstream, srcRC, dstRC
	d.hasPipe, d.buffered, d.n, d.err, d.moved = false, 0, 0, nil, 0
	d.splicing, d.buf, d.off = false, nil, 0
	d.parkIdle, d.parked = false, false
}

// clear drops references so a pooled conn does not pin sockets.
func (d *pump) clear() {
	d.c, d.srcRC, d.dstRC, d.err = nil, nil, nil, nil
}

// run moves bytes until src reaches EOF (nil) or an error, including the error a read or write returns
// after the conn was closed under it (net.ErrClosed).
func (d *pump) run() error {
	pool := d.c.s.p.pipes
	defer func() {
		if d.buf != nil {
			copyBufs.Put(d.buf) // stale bytes are harmless: only bytes a recv just wrote are ever sent
			d.buf = nil
		}
		if d.hasPipe {
			if d.buffered == 0 && d.err == nil {
				pool.put(d.pipe)
			} else {
				pool.discard(d.pipe)
			}
			d.hasPipe = false
		}
		d.flush()
	}()
	for {
		d.n, d.err = 0, nil
		if err := d.srcRC.Read(d.readFn); err != nil {
			return err
		}
		if d.err != nil {
			return d.err
		}
		if d.parked {
			d.parked = false
			return errParked
		}
		if d.n == 0 {
			return nil // EOF
		}
		d.buffered, d.off = d.n, 0
		d.c.touched.Store(true)
		if err := d.dstRC.Write(d.writeFn); err != nil {
			return err
		}
		if d.err != nil {
			return d.err
		}
		if d.moved >= flushEvery {
			d.flush()
		}
	}
}

// onReadable runs with src's read lock held: borrow a pipe if needed, splice what the socket has into it.
// Returning false parks the goroutine until src is readable, after the pipe went back to the pool.
func (d *pump) onReadable(fd uintptr) bool {
	if !d.splicing {
		return d.recv(int(fd))
	}
	pool := d.c.s.p.pipes
	if !d.hasPipe {
		p, err := pool.get()
		if err != nil {
			d.err = err
			return true
		}
		d.pipe, d.hasPipe = p, true
	}
	for {
		n, err := rawSplice(int(fd), d.pipe.w, d.c.s.p.chunk)
		switch err {
		case nil:
			d.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			// Nothing to read (the pipe is empty, so it is not the pipe that is full): park empty-handed.
			pool.put(d.pipe)
			d.hasPipe = false
			d.flush()
			d.parked = d.parkIdle
			return d.parked
		default:
			d.err = err
			return true
		}
	}
}

// onWritable runs with dst's write lock held: splice the pipe's bytes into dst until the pipe is empty
// (true) or dst's send buffer is full (false: park until writable).
func (d *pump) onWritable(fd uintptr) bool {
	if d.buf != nil {
		return d.send(int(fd))
	}
	for d.buffered > 0 {
		n, err := rawSplice(d.pipe.r, int(fd), d.buffered)
		switch err {
		case nil:
			d.buffered -= int(n)
			d.moved += uint64(n)
			d.c.touched.Store(true)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			d.err = err
			return true
		}
	}
	return true
}

// recv is onReadable before the direction splices: read into a borrowed buffer, which goes back to the
// pool before the goroutine parks.
func (d *pump) recv(fd int) bool {
	if d.buf == nil {
		d.buf = copyBufs.Get().(*copyBuf)
	}
	for {
		n, err := rawRecv(fd, d.buf[:])
		switch err {
		case nil:
			d.n = n
			if n == len(d.buf) {
				d.splicing = true // bulk: this buffer is sent, the next read splices
			}
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			copyBufs.Put(d.buf)
			d.buf = nil
			d.flush()
			d.parked = d.parkIdle
			return d.parked
		default:
			d.err = err
			return true
		}
	}
}

// send is onWritable for bytes in the copy buffer.
func (d *pump) send(fd int) bool {
	for d.buffered > 0 {
		n, err := rawSend(fd, d.buf[d.off:d.off+d.buffered])
		switch err {
		case nil:
			d.buffered -= n
			d.off += n
			d.moved += uint64(n)
			d.c.touched.Store(true)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			d.err = err
			return true
		}
	}
	if d.splicing {
		copyBufs.Put(d.buf) // done copying for good
		d.buf = nil
	}
	return true
}

// flush publishes the bytes moved since the last flush to the backend's stats and metrics.
func (d *pump) flush() {
	if d.moved == 0 {
		return
	}
	be := d.c.be
	if d.upstream {
		be.bytesUp.Add(d.moved)
		add(be.m.bytesUp, d.moved)
	} else {
		be.bytesDown.Add(d.moved)
		add(be.m.bytesDown, d.moved)
	}
	d.moved = 0
}
