package proxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// flushEvery bounds how many bytes a busy direction moves before it publishes them to stats and metrics,
// so a long bulk transfer shows progress without an atomic add per splice.
const flushEvery = 4 << 20

// pump moves one direction of a connection, src to dst, with splice(2) through a pipe borrowed from the
// proxy's pool only while bytes are in flight.
//
// The wait for data happens inside src's RawConn.Read: the callback borrows a pipe and splices; when the
// socket has nothing (EAGAIN) it hands the pipe back and returns false, so the Go netpoller parks the
// goroutine holding nothing but the two sockets. Bytes in the pipe are then spliced into dst inside dst's
// RawConn.Write callback, which parks on a full socket buffer. The pipe is always empty when the next read
// starts, so a pipe put back in the pool never carries stale bytes; after an error it is closed instead.
type pump struct {
	c        *conn
	upstream bool // client to backend
	src, dst *net.TCPConn
	srcRC    syscall.RawConn
	dstRC    syscall.RawConn

	pipe     pipe
	hasPipe  bool
	buffered int    // bytes in pipe not yet written to dst
	n        int    // result of the last read callback
	err      error  // error of the last callback
	moved    uint64 // bytes written to dst, not yet published

	// Bound once per pooled conn so RawConn calls do not allocate closures.
	readFn, writeFn func(fd uintptr) bool
}

func (d *pump) bind() {
	d.readFn = d.onReadable
	d.writeFn = d.onWritable
}

// reset prepares d for a new connection.
func (d *pump) reset(c *conn, upstream bool, src, dst *net.TCPConn, srcRC, dstRC syscall.RawConn) {
	d.c, d.upstream, d.src, d.dst, d.srcRC, d.dstRC = c, upstream, src, dst, srcRC, dstRC
	d.hasPipe, d.buffered, d.n, d.err, d.moved = false, 0, 0, nil, 0
}

// clear drops references so a pooled conn does not pin sockets.
func (d *pump) clear() {
	d.c, d.src, d.dst, d.srcRC, d.dstRC, d.err = nil, nil, nil, nil, nil, nil
}

// run moves bytes until src reaches EOF (nil) or an error, including the error a read or write returns
// after the conn was closed under it (net.ErrClosed).
func (d *pump) run() error {
	pool := d.c.s.p.pipes
	defer func() {
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
		if d.n == 0 {
			return nil // EOF
		}
		d.buffered = d.n
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
		n, err := unix.Splice(int(fd), nil, d.pipe.w, nil, d.c.s.p.chunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
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
			return false
		default:
			d.err = err
			return true
		}
	}
}

// onWritable runs with dst's write lock held: splice the pipe's bytes into dst until the pipe is empty
// (true) or dst's send buffer is full (false: park until writable).
func (d *pump) onWritable(fd uintptr) bool {
	for d.buffered > 0 {
		n, err := unix.Splice(d.pipe.r, nil, int(fd), nil, d.buffered, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
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
