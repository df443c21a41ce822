package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// The backend speaks a one-byte protocol so one server answers every test: the first byte a client sends picks
// what the server does with the connection.
const (
	modeBulk  = 'B' // read and discard until EOF, counting bytes (throughput)
	modeReply = 'R' // read a 32-byte request, write a 64-byte reply, close (short connections)
	modeEcho  = 'E' // echo the byte, then wait for EOF (idle connections)
	modeKeep  = 'K' // read a 32-byte request, write a 64-byte reply, then wait for EOF (reconnect storm)

	requestSize = 32
	replySize   = 64
)

// backend is the in-process upstream server: a few listeners on 127.0.0.1 behind the target under test.
type backend struct {
	lns      []net.Listener
	received atomic.Int64 // bulk bytes read, across all connections
	accepted atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// newBackend listens on n free loopback ports; serve starts accepting.
func newBackend(n int) (*backend, error) {
	b := &backend{conns: make(map[net.Conn]struct{})}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.close()
			return nil, err
		}
		b.lns = append(b.lns, ln)
	}
	return b, nil
}

func (b *backend) addrs() []string {
	out := make([]string, len(b.lns))
	for i, ln := range b.lns {
		out[i] = ln.Addr().String()
	}
	return out
}

// serve accepts on every listener until ctx is done or close is called.
func (b *backend) serve(ctx context.Context) {
	for _, ln := range b.lns {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					return
				}
				b.accepted.Add(1)
				b.track(c, true)
				b.wg.Add(1)
				go func() {
					defer b.wg.Done()
					defer b.track(c, false)
					b.handle(c)
				}()
			}
		}()
	}
	go func() {
		<-ctx.Done()
		b.close()
	}()
}

func (b *backend) track(c net.Conn, add bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		b.conns[c] = struct{}{}
		return
	}
	delete(b.conns, c)
	c.Close()
}

func (b *backend) handle(c net.Conn) {
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		return // a health check: connect and close
	}
	switch first[0] {
	case modeBulk:
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			b.received.Add(int64(n))
			if err != nil {
				return
			}
		}
	case modeReply:
		var req [requestSize - 1]byte
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		var reply [replySize]byte
		for i := range reply {
			reply[i] = 'r'
		}
		c.Write(reply[:])
	case modeKeep:
		var req [requestSize - 1]byte
		if _, err := io.ReadFull(c, req[:]); err != nil {
			return
		}
		var reply [replySize]byte
		if _, err := c.Write(reply[:]); err != nil {
			return
		}
		io.Copy(io.Discard, c)
	case modeEcho:
		if _, err := c.Write(first[:]); err != nil {
			return
		}
		io.Copy(io.Discard, c)
	}
}

// close stops the listeners and closes every open connection, then waits for the handlers.
func (b *backend) close() {
	for _, ln := range b.lns {
		ln.Close()
	}
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
}

func (b *backend) wait() { b.wg.Wait() }

// open is how many connections the backend holds right now.
func (b *backend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}
