//go:build linux

package flowfwd_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TCP traffic for the tests: a server that greets each connection with its node's id byte and then echoes,
// idle connections that prove they are alive with one ping-pong, and streams that send a deterministic byte
// sequence and check every echoed byte.

const (
	port     = 6443 // echo servers
	sinkPort = 6444 // sinks, for the benchmark's bulk streams
)

// server accepts on the wildcard ":port" (dual stack), as vipd's proxy does with its default -listen.
type server struct {
	ln       net.Listener
	id       byte // greeting; 0 for a sink, which greets nothing and discards what it reads
	accepted atomic.Int64
	wg       sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func serve(t testing.TB, n *ns, id byte) *server { return listen(t, n, id, port) }

// sink accepts on the wildcard ":sinkPort" and discards everything it reads.
func sink(t testing.TB, n *ns) *server { return listen(t, n, 0, sinkPort) }

func listen(t testing.TB, n *ns, id byte, port int) *server {
	t.Helper()
	s := &server{id: id, conns: map[net.Conn]struct{}{}}
	var err error
	n.do(t, func() { s.ln, err = net.Listen("tcp", ":"+strconv.Itoa(port)) })
	if err != nil {
		t.Fatalf("listen in %s: %v", n.name, err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(s.close)
	return s
}

func (s *server) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // closed
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.echo(c)
	}
}

func (s *server) echo(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	if s.id == 0 {
		_, _ = io.Copy(io.Discard, c)
		return
	}
	if _, err := c.Write([]byte{s.id}); err != nil {
		return
	}
	if _, err := io.Copy(c, c); err == nil {
		_ = c.(*net.TCPConn).CloseWrite() // the client's EOF, echoed
		_, _ = io.Copy(io.Discard, c)
	}
}

// open counts the connections the server has not yet seen end.
func (s *server) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *server) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// dialMany opens count connections from the client namespace to vip and returns them with the id byte each
// one was greeted with.
func dialMany(t testing.TB, client *ns, vip netip.Addr, count int) ([]*net.TCPConn, []byte) {
	t.Helper()
	conns := make([]*net.TCPConn, 0, count)
	ids := make([]byte, 0, count)
	var err error
	client.do(t, func() {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
		for range count {
			var c net.Conn
			if c, err = d.Dial("tcp", netip.AddrPortFrom(vip, port).String()); err != nil {
				return
			}
			conns = append(conns, c.(*net.TCPConn))
		}
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	if err != nil {
		t.Fatalf("dial %s after %d connections: %v", vip, len(conns), err)
	}
	for i, c := range conns {
		id, err := greeting(c)
		if err != nil {
			t.Fatalf("connection %d: read greeting: %v", i, err)
		}
		ids = append(ids, id)
	}
	return conns, ids
}

// dialGreeting opens one connection and reads its greeting; an error of either step is returned.
func dialGreeting(t testing.TB, client *ns, vip netip.Addr) (byte, error) {
	t.Helper()
	var c net.Conn
	var err error
	client.do(t, func() {
		d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}
		c, err = d.Dial("tcp", netip.AddrPortFrom(vip, port).String())
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return greeting(c.(*net.TCPConn))
}

func greeting(c *net.TCPConn) (byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return b[0], err
}

// ping sends 8 bytes and expects them back within timeout.
func ping(c *net.TCPConn, seq uint64, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	defer c.SetDeadline(time.Time{})
	var out, in [8]byte
	binary.BigEndian.PutUint64(out[:], seq)
	if _, err := c.Write(out[:]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, in[:]); err != nil {
		return err
	}
	if in != out {
		return fmt.Errorf("echo %x, sent %x", in, out)
	}
	return nil
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// word is the 8 bytes at offset 8*i of stream seed (splitmix64): any chunking of a stream sees the same bytes.
func word(seed uint64, i int64) uint64 {
	x := seed*0x9e3779b97f4a7c15 + uint64(i)
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// fill writes stream seed's bytes from offset off into p.
func fill(p []byte, seed uint64, off int64) {
	for i := 0; i < len(p); {
		pos := off + int64(i)
		w := word(seed, pos/8)
		for b := pos % 8; b < 8 && i < len(p); b++ {
			p[i] = byte(w >> (8 * b))
			i++
		}
	}
}

// stream writes chunk bytes of its pattern every tick until stopped or maxBytes are sent, then half-closes;
// its reader checks every echoed byte and ends at the echoed EOF. Both loops are bounded in bytes, and the
// owner's stop bounds them in time.
type stream struct {
	c     *net.TCPConn
	seed  uint64
	sent  atomic.Int64
	recvd atomic.Int64
	stop  chan struct{}
	once  sync.Once // closes stop
	done  sync.WaitGroup

	mu         sync.Mutex
	werr, rerr error // a mismatch is a read error too
}

func (s *stream) setErr(dst *error, err error) {
	s.mu.Lock()
	*dst = err
	s.mu.Unlock()
}

// errs returns the writer's and the reader's error so far.
func (s *stream) errs() (werr, rerr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.werr, s.rerr
}

func startStream(c *net.TCPConn, seed uint64, chunk int, tick time.Duration, maxBytes int64) *stream {
	s := &stream{c: c, seed: seed, stop: make(chan struct{})}
	s.done.Add(2)
	go func() {
		defer s.done.Done()
		buf := make([]byte, chunk)
		tk := time.NewTicker(tick)
		defer tk.Stop()
		for s.sent.Load() < maxBytes {
			select {
			case <-s.stop:
				s.setErr(&s.werr, c.CloseWrite())
				return
			case <-tk.C:
			}
			fill(buf, seed, s.sent.Load())
			n, err := c.Write(buf)
			s.sent.Add(int64(n))
			if err != nil {
				s.setErr(&s.werr, err)
				return
			}
		}
		s.setErr(&s.werr, c.CloseWrite())
	}()
	go func() {
		defer s.done.Done()
		buf := make([]byte, 64<<10)
		want := make([]byte, len(buf))
		for {
			n, err := c.Read(buf)
			if n > 0 {
				off := s.recvd.Load()
				fill(want[:n], seed, off)
				if !bytes.Equal(buf[:n], want[:n]) {
					s.setErr(&s.rerr, fmt.Errorf("echoed bytes %d..%d differ from those sent", off, off+int64(n)))
					return
				}
				s.recvd.Add(int64(n))
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				s.setErr(&s.rerr, err)
				return
			}
		}
	}()
	return s
}

// finish stops the writer and waits (at most timeout, then the connection is closed) for the reader to
// see the echoed EOF. It may be called again.
func (s *stream) finish(timeout time.Duration) {
	s.once.Do(func() { close(s.stop) })
	waited := make(chan struct{})
	go func() { s.done.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(timeout):
		s.c.Close()
		<-waited
	}
}
