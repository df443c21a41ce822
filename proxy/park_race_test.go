package proxy

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestParkRacesClose reproduces the crash seen after a docker pause/unpause: many downstream directions
// wake and park again (the backend trickles bytes) while the clients reset their connections, so the
// upstream pump's closeBoth claims a downstream direction in the instant its pump publishes it as parked.
// The claiming closer may then finish the direction and release the conn before park has armed the backend
// socket; park must not touch the conn after publishing (it used to read the released conn's fields and
// panic with a nil pointer).
func TestParkRacesClose(t *testing.T) {
	const (
		n      = 64
		rounds = 4
	)
	be := startBackend(t, func(c net.Conn) {
		b := []byte{'x'}
		deadline := time.Now().Add(5 * time.Second)
		for i := 0; i < 20000 && time.Now().Before(deadline); i++ {
			if _, err := c.Write(b); err != nil {
				return
			}
			if i%8 == 0 {
				time.Sleep(10 * time.Microsecond)
			}
		}
	})
	tp := startProxy(t, Config{IdleTimeout: 5 * time.Second}, newFakeBackends(be.addr))
	for range rounds {
		conns := make([]*net.TCPConn, n)
		for i := range conns {
			conns[i] = dial(t, tp.addr)
		}
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() {
				buf := make([]byte, 64)
				// Read a little so the downstream direction has cycled through wake and park, then reset.
				if _, err := io.ReadAtLeast(c, buf, 1+i%32); err != nil {
					t.Errorf("read before reset: %v", err)
				}
				_ = c.SetLinger(0)
				_ = c.Close()
			})
		}
		wg.Wait()
	}
	waitFor(t, 10*time.Second, "every connection released", func() bool { return tp.p.Counters().Active == 0 })
}

// TestParkThenClaimBeforeArm holds a parking downstream pump in the window between publishing the direction
// as parked and arming the backend socket, resets the client meanwhile so the upstream pump's close claims
// the parked direction, and checks that the conn is not released (and recycled) while the pump is still
// inside park; then that the pump finishes cleanly and the pooled conn serves the next connection.
func TestParkThenClaimBeforeArm(t *testing.T) {
	more := make(chan struct{})
	be := startBackend(t, func(c net.Conn) {
		if _, err := io.WriteString(c, "hello\n"); err != nil {
			return
		}
		select {
		case <-more:
			if _, err := io.WriteString(c, "more\n"); err != nil {
				return
			}
		case <-time.After(10 * time.Second):
		}
		_, _ = io.Copy(io.Discard, c)
	})
	p, err := New(Config{Logger: testLogger(t)}, newFakeBackends(be.addr))
	if err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	held := make(chan *conn, 1)
	resume := make(chan struct{})
	var resumeOnce sync.Once
	unblock := func() { resumeOnce.Do(func() { close(resume) }) }
	t.Cleanup(unblock)
	p.hooks.parked = func(c *conn) {
		if armed.CompareAndSwap(true, false) {
			held <- c
			<-resume
		}
	}
	tp := serveProxy(t, p)
	cl := dial(t, tp.addr)
	if line, err := readLine(cl); err != nil || line != "hello" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	armed.Store(true)
	close(more) // the direction wakes, forwards "more" and parks again: the hook holds it there
	var c *conn
	select {
	case c = <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("downstream pump never parked again")
	}
	if line, err := readLine(cl); err != nil || line != "more" {
		t.Fatalf("second line %q, %v", line, err)
	}
	_ = cl.SetLinger(0)
	_ = cl.Close()
	waitFor(t, 5*time.Second, "closer to claim the parked direction", func() bool { return c.downState.Load() == downDone })
	// Both directions are over now; only the pump inside park may still hold the conn. Give a wrong
	// release (running reaching 0) time to happen.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if c.running.Load() == 0 || p.Counters().Active == 0 {
			t.Fatal("conn released while its downstream pump is still inside park")
		}
		time.Sleep(5 * time.Millisecond)
	}
	unblock()
	waitFor(t, 5*time.Second, "conn released once park returned", func() bool { return p.Counters().Active == 0 })
	cl2 := dial(t, tp.addr)
	if line, err := readLine(cl2); err != nil || line != "hello" {
		t.Fatalf("greeting on the next connection %q, %v", line, err)
	}
}
