package reload

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// backend is an echo server that first says its name ("b2\n"), so a client learns which backend the proxy
// picked, then echoes. A connection that ends having sent nothing is a TCP health check; their times are
// kept, so the test sees a changed -check-interval take effect from the backend's side.
type backend struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	checks []time.Time
}

// startBackend listens on addr inside ns until the test ends.
func startBackend(t *testing.T, ns *netNS, name, addr string) *backend {
	t.Helper()
	if len(name) != 2 {
		t.Fatalf("backend name %q: the clients read a 3-byte hello", name)
	}
	ln, err := ns.listen(addr)
	if err != nil {
		t.Fatalf("backend %s on %s: %v", name, addr, err)
	}
	b := &backend{name: name, ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go b.handle(c)
	}
}

func (b *backend) handle(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
		c.Close()
	}()
	_, _ = fmt.Fprintf(c, "%s\n", b.name)
	buf := make([]byte, 32<<10)
	total := 0
	for {
		n, err := c.Read(buf)
		if n > 0 {
			total += n
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if total == 0 {
				b.mu.Lock()
				b.checks = append(b.checks, time.Now())
				b.mu.Unlock()
			}
			return
		}
	}
}

// checksSince counts the health checks that ended after from.
func (b *backend) checksSince(from time.Time) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, at := range b.checks {
		if at.After(from) {
			n++
		}
	}
	return n
}

func (b *backend) close() {
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
