package cluster

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// echoServer accepts connections, echoes lines, and lets the test close every connection it holds.
type echoServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	n     int
}

func newEchoServer(t *testing.T) *echoServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.n++
			s.mu.Unlock()
			go func() {
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(line))
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.closeAll(); <-done })
	return s
}

func (s *echoServer) accepted() int { s.mu.Lock(); defer s.mu.Unlock(); return s.n }

func (s *echoServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func TestSpares(t *testing.T) {
	srv := newEchoServer(t)
	addr := srv.ln.Addr().String()
	sp := newSpares(func(ctx context.Context, a string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a)
	})
	defer sp.close()
	// full reports whether addr has all its spares, after a maintain pass (keep) as the cluster runs them.
	full := func() bool { sp.keep([]string{addr}, time.Now()); return sp.count(addr) == sparesPerPeer }

	testutil.WaitFor(t, 2*time.Second, "the spares", full)
	if srv.accepted() != sparesPerPeer {
		t.Fatalf("%d connections for %d spares", srv.accepted(), sparesPerPeer)
	}
	c := sp.take(addr)
	if c == nil {
		t.Fatal("no spare handed over")
	}
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
		t.Fatalf("handed-over spare: %q, %v", line, err)
	}
	c.Close()
	// Not refilled at once: raft is busy making connections when it takes spares.
	sp.keep([]string{addr}, time.Now())
	if sp.count(addr) != sparesPerPeer-1 || srv.accepted() != sparesPerPeer {
		t.Errorf("refilled at once: %d spares, %d connections", sp.count(addr), srv.accepted())
	}
	start := time.Now()
	testutil.WaitFor(t, 3*time.Second, "refilled after the delay", full)
	if d := time.Since(start); d < spareRefillDelay/2 {
		t.Errorf("refilled after %v", d)
	}

	// The peer closes the idle spares (a restart): the watchers notice and new ones are made.
	before := srv.accepted()
	srv.closeAll()
	testutil.WaitFor(t, 5*time.Second, "the closed spares replaced", func() bool {
		return full() && srv.accepted() == before+sparesPerPeer
	})

	// No longer wanted: dropped.
	sp.keep(nil, time.Now())
	if sp.count(addr) != 0 || sp.take(addr) != nil {
		t.Error("spares kept for an address no longer wanted")
	}
	// Aged spares are replaced.
	testutil.WaitFor(t, 3*time.Second, "spares again", full)
	before = srv.accepted()
	sp.keep([]string{addr}, time.Now().Add(spareMaxAge+time.Second))
	testutil.WaitFor(t, 5*time.Second, "the aged spares replaced", func() bool {
		return full() && srv.accepted() == before+sparesPerPeer
	})
}

// TestSparesBackOff: a peer that refuses connections is retried with a growing delay, not on every pass.
func TestSparesBackOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	var mu sync.Mutex
	dials := 0
	sp := newSpares(func(ctx context.Context, a string) (net.Conn, error) {
		mu.Lock()
		dials++
		mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a)
	})
	defer sp.close()
	now := time.Now()
	sp.keep([]string{addr}, now)
	testutil.WaitFor(t, 2*time.Second, "first dial failed", func() bool {
		sp.mu.Lock()
		defer sp.mu.Unlock()
		return len(sp.dialing) == 0 && sp.backoff[addr] > 0
	})
	for i := range 10 {
		sp.keep([]string{addr}, now.Add(time.Duration(i)*50*time.Millisecond)) // maintain passes within the backoff
	}
	mu.Lock()
	defer mu.Unlock()
	if dials != 1 {
		t.Errorf("%d dials within the backoff, want 1", dials)
	}
}
