package handover

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vipd/vipd/internal/nstest"
)

// helloLen is the length of a backend's hello, "n2 000042\n": the node whose proxy connected (told by its
// source address on the segment) and the connection's serial, the key of the backend's record of it.
const helloLen = 10

// backend is the echo servers in the backends' namespace, one per address, sharing one record. It greets each connection with its hello, then
// echoes everything, keeping a count and a running SHA-256 of what it received; at the client's FIN it records
// them, half-closes in turn, and the client compares. A connection that ends with an error (a reset) is
// recorded with it. The health checks' connections (closed at once) are records too, never looked at.
type backend struct {
	lns    []net.Listener
	nodeOf func(net.Addr) string // "n1" … from the proxy's source address, "??" if unknown
	serial atomic.Int64
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	ended map[int64]backendEnd
}

// backendEnd is how one connection ended at the backend.
type backendEnd struct {
	n   int64
	sum [sha256.Size]byte
	err error // nil: the client half-closed (EOF)
}

// startBackends listens on every addr in ns until the test ends.
func startBackends(t *testing.T, ns *nstest.NS, nodeOf func(net.Addr) string, addrs ...string) *backend {
	t.Helper()
	b := &backend{nodeOf: nodeOf, conns: map[net.Conn]struct{}{}, ended: map[int64]backendEnd{}}
	t.Cleanup(b.close)
	for _, addr := range addrs {
		ln, err := ns.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("backend on %s: %v", addr, err)
		}
		b.lns = append(b.lns, ln)
		b.wg.Go(func() { b.serve(ln) })
	}
	return b
}

func (b *backend) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Go(func() { b.handle(c) })
	}
}

func (b *backend) handle(c net.Conn) {
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	serial := b.serial.Add(1) % 1e6 // six digits in the hello
	if _, err := fmt.Fprintf(c, "%s %06d\n", b.nodeOf(c.RemoteAddr()), serial); err != nil {
		return
	}
	var n int64
	var sum hash.Hash = sha256.New()
	buf := make([]byte, 32<<10)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			n += int64(k)
			sum.Write(buf[:k])
			if _, werr := c.Write(buf[:k]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			end := backendEnd{n: n}
			copy(end.sum[:], sum.Sum(nil))
			if !errors.Is(err, io.EOF) {
				end.err = err
			}
			b.mu.Lock()
			b.ended[serial] = end
			b.mu.Unlock()
			if end.err == nil {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			return
		}
	}
}

// end returns how the connection with the serial ended, if it has.
func (b *backend) end(serial int64) (backendEnd, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.ended[serial]
	return e, ok
}

func (b *backend) close() {
	for _, ln := range b.lns {
		ln.Close()
	}
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
