package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// blackhole returns a loopback address whose SYNs are dropped: a listening socket with backlog 0 whose
// accept queue one completed connection already fills, so a connect to it hangs until the dialer gives up.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	// Fill the queue; the second connect may already hang, so it gets a short timeout of its own.
	for range 2 {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			t.Cleanup(func() { _ = c.Close() })
		}
	}
	return addr
}

// TestDialTimeoutTriesTheNextBackend: a connect that never completes is failed by the reactor's timer after
// DialTimeout, counted against its backend and reported, and the connection goes to the next backend.
func TestDialTimeoutTriesTheNextBackend(t *testing.T) {
	hole := blackhole(t)
	good := startBackend(t, echo)
	fb := newFakeBackends(hole, good.addr)
	const timeout = 300 * time.Millisecond
	tp := startProxy(t, Config{DialTimeout: timeout}, fb)
	start := time.Now()
	c := dial(t, tp.addr) // round-robin starts with the first backend: the black hole
	if r, err := roundTrip(c, "through"); err != nil || r != "through" {
		t.Fatalf("round trip after a timed-out attempt: %q, %v", r, err)
	}
	if took := time.Since(start); took < timeout || took > timeout+3*time.Second {
		t.Fatalf("answer after %v, want just over the %v dial timeout", took, timeout)
	}
	if f := fb.failuresOf(hole); f != 1 {
		t.Fatalf("black hole reported %d times, want 1", f)
	}
	for _, s := range tp.p.Stats() {
		if s.Addr == hole && s.DialErrors != 1 {
			t.Fatalf("black hole stats %+v, want 1 dial error", s)
		}
	}
}

// TestBurstOfConnectionsAllServed opens many connections at once (a small reconnect storm): every one is
// accepted, queued, dialed and answered; none is refused.
func TestBurstOfConnectionsAllServed(t *testing.T) {
	const n = 1000
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", tp.addr, 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := fmt.Sprintf("client %d", i)
			if r, err := roundTrip(c, msg); err != nil || r != msg {
				errs <- fmt.Errorf("client %d: %q, %v", i, r, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if c := tp.p.Counters(); c.RefusedLocal+c.RefusedMaxConns+c.RefusedNoBackend != 0 {
		t.Fatalf("refusals in a burst with a healthy backend: %+v", c)
	}
}

// TestConnectionsSpreadOverReactors holds more idle connections than the accepting reactor keeps before it
// hands new ones over: every reactor ends up owning some, and all of them still carry bytes.
func TestConnectionsSpreadOverReactors(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one P: one reactor")
	}
	n := 4 * spreadSlack * runtime.GOMAXPROCS(0)
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = dial(t, tp.addr)
		if r, err := roundTrip(conns[i], "x"); err != nil || r != "x" {
			t.Fatalf("conn %d: %q, %v", i, r, err)
		}
	}
	tp.p.mu.Lock()
	var loads []int64
	for s := range tp.p.servers {
		for _, r := range s.reactors {
			loads = append(loads, r.load.Load())
		}
	}
	tp.p.mu.Unlock()
	t.Logf("%d idle connections per reactor: %v", n, loads)
	for i, l := range loads {
		if l == 0 {
			t.Fatalf("reactor %d owns no connection of %d: %v", i, n, loads)
		}
	}
	for i, c := range conns {
		if r, err := roundTrip(c, "again"); err != nil || r != "again" {
			t.Fatalf("conn %d after spreading: %q, %v", i, r, err)
		}
	}
}
