package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/testutil"
)

// nameOf dials the proxy and returns the name the backend announces, leaving the connection open.
func nameOf(t *testing.T, addr string) (*net.TCPConn, string) {
	t.Helper()
	c := dial(t, addr)
	name, err := readLine(c)
	if err != nil {
		t.Fatalf("read backend name: %v", err)
	}
	return c, name
}

func TestSetConfigBalanceAppliesToTheNextConnection(t *testing.T) {
	a, b := startBackend(t, named("a")), startBackend(t, named("b"))
	tp := startProxy(t, Config{}, newFakeBackends(a.addr, b.addr))
	_, first := nameOf(t, tp.addr) // kept open: its backend has one connection
	c2, second := nameOf(t, tp.addr)
	if first == second {
		t.Fatalf("round robin sent two connections to %s", first)
	}
	_ = c2.Close()
	testutil.WaitFor(t, 2*time.Second, "second connection released", func() bool { return tp.p.Counters().Active == 1 })
	// Round robin would now pick first's backend again; least-conn must pick the idle one.
	if err := tp.p.SetConfig(Config{Balance: LeastConn}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c, got := nameOf(t, tp.addr)
		if got != second {
			t.Fatalf("connection %d after the switch to least-conn went to %s (busy), not %s (idle)", i, got, second)
		}
		_ = c.Close()
		testutil.WaitFor(t, 2*time.Second, "release", func() bool { return tp.p.Counters().Active == 1 })
	}
	// And back: round robin alternates again, whatever the load.
	if err := tp.p.SetConfig(Config{Balance: RoundRobin}); err != nil {
		t.Fatal(err)
	}
	_, x := nameOf(t, tp.addr)
	_, y := nameOf(t, tp.addr)
	if x == y {
		t.Fatalf("round robin after switching back sent two connections to %s", x)
	}
}

func TestSetConfigMaxConnsAtRunTime(t *testing.T) {
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	c1, c2 := dial(t, tp.addr), dial(t, tp.addr)
	for _, c := range []net.Conn{c1, c2} {
		if r, err := roundTrip(c, "ok"); err != nil || r != "ok" {
			t.Fatalf("echo: %q, %v", r, err)
		}
	}
	if err := tp.p.SetConfig(Config{MaxConns: 2}); err != nil {
		t.Fatal(err)
	}
	if took := expectRefused(t, tp.addr, 2*time.Second); took > 500*time.Millisecond {
		t.Fatalf("over the lowered limit: closed after %v, want at once", took)
	}
	for _, c := range []net.Conn{c1, c2} { // open connections are untouched
		if r, err := roundTrip(c, "still"); err != nil || r != "still" {
			t.Fatalf("open connection after MaxConns was lowered: %q, %v", r, err)
		}
	}
	if got := tp.p.Counters().RefusedMaxConns; got != 1 {
		t.Fatalf("RefusedMaxConns = %d, want 1", got)
	}
	if err := tp.p.SetConfig(Config{MaxConns: 3}); err != nil {
		t.Fatal(err)
	}
	if r, err := roundTrip(dial(t, tp.addr), "room"); err != nil || r != "room" {
		t.Fatalf("under the raised limit: %q, %v", r, err)
	}
}

func TestSetConfigInvalidChangesNothing(t *testing.T) {
	p, err := New(Config{MaxConns: 5, IdleTimeout: time.Minute}, newFakeBackends())
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Config{{MaxConns: -1}, {DialTimeout: -1}, {Balance: 9}, {DrainTimeout: -time.Second}} {
		if err := p.SetConfig(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("SetConfig(%+v) = %v, want ErrInvalidConfig", bad, err)
		}
	}
	if cfg := p.config(); cfg.MaxConns != 5 || cfg.IdleTimeout != time.Minute || cfg.DialTimeout != DefaultDialTimeout {
		t.Fatalf("a rejected SetConfig changed the configuration: %+v", cfg.Config)
	}
}

// TestSetConfigIdleTimeout turns the idle timeout on for connections opened without one, then off again.
func TestSetConfigIdleTimeout(t *testing.T) {
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	quiet, busy := dial(t, tp.addr), dial(t, tp.addr)
	for _, c := range []net.Conn{quiet, busy} {
		if _, err := roundTrip(c, "hi"); err != nil {
			t.Fatal(err)
		}
	}
	const idle = 150 * time.Millisecond
	if err := tp.p.SetConfig(Config{IdleTimeout: idle}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for time.Since(start) < 3*idle {
		if r, err := roundTrip(busy, "tick"); err != nil || r != "tick" {
			t.Fatalf("active connection broken after %v: %q, %v", time.Since(start), r, err)
		}
		time.Sleep(idle / 3)
	}
	expectClosed(t, quiet, 2*time.Second)

	if err := tp.p.SetConfig(Config{}); err != nil { // idle timeout off again
		t.Fatal(err)
	}
	quiet2 := dial(t, tp.addr)
	if _, err := roundTrip(quiet2, "hi"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * idle) // a negative: nothing may close it in what would have been several idle periods
	if r, err := roundTrip(quiet2, "alive"); err != nil || r != "alive" {
		t.Fatalf("quiet connection closed after the idle timeout was turned off: %q, %v", r, err)
	}
}

// TestSetConfigKeepAliveAndDrain checks that a new KeepAlive reaches the next connection's sockets (the Listen
// listener still passes on the old one) once the connection has lived through a keepalive pass, and a new
// DrainTimeout the next drain.
func TestSetConfigKeepAliveAndDrain(t *testing.T) {
	be := startBackend(t, echo)
	p, err := New(Config{Logger: testLogger(t)}, newFakeBackends(be.addr))
	if err != nil {
		t.Fatal(err)
	}
	type sockets struct{ client, backend int }
	opened := make(chan sockets, 4)
	p.hooks.connected = func(client, backend int) { opened <- sockets{client, backend} }
	type idles struct{ client, backend int }
	got := make(chan idles, 4)
	go func() {
		// The connection stays open while this reads its sockets (the test holds it), so the descriptors
		// are still its own. The keepalive pass runs within keepAliveDelay of the connect.
		for fds := range opened {
			var g idles
			deadline := time.Now().Add(5 * keepAliveDelay)
			for time.Now().Before(deadline) {
				g = idles{sockoptRaw(fds.client, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE), sockoptRaw(fds.backend, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)}
				if sockoptRaw(fds.backend, unix.SOL_SOCKET, unix.SO_KEEPALIVE) == 1 && g.client == g.backend {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			got <- g
		}
	}()
	t.Cleanup(func() { close(opened) })
	tp := serveProxy(t, p)
	for i, tt := range []struct {
		keepAlive time.Duration
		want      int
	}{{0, int(DefaultKeepAlive / time.Second)}, {7 * time.Second, 7}} {
		if err := p.SetConfig(Config{KeepAlive: tt.keepAlive, DrainTimeout: 200 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		c := dial(t, tp.addr)
		if _, err := roundTrip(c, "x"); err != nil {
			t.Fatal(err)
		}
		if g := <-got; g.client != tt.want || g.backend != tt.want {
			t.Fatalf("connection %d: TCP_KEEPIDLE client %d backend %d, want %d", i, g.client, g.backend, tt.want)
		}
	}
	start := time.Now()
	if err := tp.shutdown(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || took > 5*time.Second {
		t.Fatalf("drain took %v with open connections, want about the 200ms set at run time (default %v)", took, DefaultDrainTimeout)
	}
}

func sockoptRaw(fd, level, opt int) int {
	v, err := unix.GetsockoptInt(fd, level, opt)
	if err != nil {
		return -1
	}
	return v
}

// streamer moves numbered chunks through one proxied connection to an echo backend and checks every byte
// that comes back, until the connection ends or stop is closed.
type streamer struct {
	c      net.Conn
	rounds atomic.Int64
	err    error // why it ended; nil while running or after stop
	done   chan struct{}
}

func startStreamer(c net.Conn, seed byte, stop <-chan struct{}) *streamer {
	s := &streamer{c: c, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		out, in := make([]byte, 4096), make([]byte, 4096)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for j := range out {
				out[j] = seed + byte(i) + byte(j)
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(out); err != nil {
				s.err = err
				return
			}
			if _, err := io.ReadFull(c, in); err != nil {
				s.err = err
				return
			}
			if !bytes.Equal(in, out) {
				s.err = fmt.Errorf("round %d: echoed bytes differ", i)
				return
			}
			s.rounds.Add(1)
		}
	}()
	return s
}

// TestCloseBackend removes one of two backends while connections stream through both: the removed
// backend's connections keep streaming for the grace, then end; the others never notice.
func TestCloseBackend(t *testing.T) {
	gone, kept := startBackend(t, named("gone")), startBackend(t, named("kept"))
	fb := newFakeBackends(gone.addr, kept.addr)
	tp := startProxy(t, Config{}, fb)
	stop := make(chan struct{})
	var streams = map[string][]*streamer{}
	for i := range 6 {
		c, name := nameOf(t, tp.addr)
		streams[name] = append(streams[name], startStreamer(c, byte(i), stop))
	}
	defer func() {
		close(stop)
		for _, ss := range streams {
			for _, s := range ss {
				_ = s.c.Close()
				<-s.done
			}
		}
	}()
	if len(streams["gone"]) != 3 || len(streams["kept"]) != 3 {
		t.Fatalf("connections per backend: gone %d, kept %d; want 3 and 3", len(streams["gone"]), len(streams["kept"]))
	}

	const grace = 500 * time.Millisecond
	fb.set(kept.addr) // the reload: gone is no longer a backend
	start := time.Now()
	tp.p.CloseBackend(gone.addr, grace)
	if took := time.Since(start); took > 100*time.Millisecond {
		t.Fatalf("CloseBackend took %v; it must return at once", took)
	}
	marks := map[*streamer]int64{}
	for _, s := range streams["gone"] {
		marks[s] = s.rounds.Load()
	}
	for _, s := range streams["gone"] {
		select {
		case <-s.done:
			if took := time.Since(start); took < grace {
				t.Fatalf("a removed backend's connection ended after %v, before the %v grace: %v", took, grace, s.err)
			}
			if s.rounds.Load() <= marks[s] {
				t.Fatalf("a removed backend's connection moved no byte during its grace")
			}
		case <-time.After(grace + 5*time.Second):
			t.Fatal("a removed backend's connection was not closed after its grace")
		}
	}
	for _, s := range streams["kept"] {
		mark := s.rounds.Load()
		testutil.WaitFor(t, 5*time.Second, "kept connections to keep streaming", func() bool { return s.rounds.Load() >= mark+20 })
		select {
		case <-s.done:
			t.Fatalf("a kept backend's connection ended: %v", s.err)
		default:
		}
	}
	for _, st := range tp.p.Stats() {
		if st.Addr == gone.addr {
			t.Fatalf("removed backend still in Stats: %+v", st)
		}
	}
}

// TestCloseBackendReAdded closes a backend and adds it back within the grace: connections opened to it
// after that are a new backend's and survive the grace.
func TestCloseBackendReAdded(t *testing.T) {
	be := startBackend(t, echo)
	fb := newFakeBackends(be.addr)
	tp := startProxy(t, Config{}, fb)
	old := dial(t, tp.addr)
	if _, err := roundTrip(old, "old"); err != nil {
		t.Fatal(err)
	}
	const grace = 300 * time.Millisecond
	tp.p.CloseBackend(be.addr, grace)
	fresh := dial(t, tp.addr) // the reload added it back at once
	if _, err := roundTrip(fresh, "new"); err != nil {
		t.Fatal(err)
	}
	expectClosed(t, old, grace+5*time.Second)
	if r, err := roundTrip(fresh, "still"); err != nil || r != "still" {
		t.Fatalf("connection to the re-added backend closed with the old one: %q, %v", r, err)
	}
}

// TestCloseBackendEndsWithServe checks that a pending CloseBackend does not outlive Serve (goleak would
// report its goroutine) nor hold up its drain.
func TestCloseBackendEndsWithServe(t *testing.T) {
	be := startBackend(t, echo)
	tp := startProxy(t, Config{DrainTimeout: 100 * time.Millisecond}, newFakeBackends(be.addr))
	c := dial(t, tp.addr)
	if _, err := roundTrip(c, "x"); err != nil {
		t.Fatal(err)
	}
	tp.p.CloseBackend(be.addr, time.Hour)
	tp.p.CloseBackend("10.255.255.1:1", time.Hour) // never dialed: nothing to do
	start := time.Now()
	if err := tp.shutdown(t); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Serve took %v to return with an hour-long CloseBackend pending", took)
	}
	expectClosed(t, c, 2*time.Second)
	tp.p.CloseBackend(be.addr, time.Hour) // no Serve running: returns, starts nothing
}

// TestWeightedSequenceIsWalked proxies over a weighted sequence as health.Monitor publishes it: round robin
// gives each backend its share in the sequence's order, and a dead heavy backend costs a connection one
// attempt, not one per entry.
func TestWeightedSequenceIsWalked(t *testing.T) {
	a, b := startBackend(t, named("a")), startBackend(t, named("b"))
	fb := newFakeBackends(a.addr, a.addr, b.addr, a.addr) // weights 3:1, smoothed
	tp := startProxy(t, Config{}, fb)
	var got []byte
	for range 8 {
		c, name := nameOf(t, tp.addr)
		got = append(got, name...)
		_ = c.Close()
	}
	if string(got) != "aabaaaba" {
		t.Fatalf("connections went to %q, want aabaaaba", got)
	}
	a.kill()
	for i := range 4 {
		c, name := nameOf(t, tp.addr)
		if name != "b" {
			t.Fatalf("connection %d went to %s", i, name)
		}
		_ = c.Close()
	}
	if n := fb.failuresOf(a.addr); n < 1 || n > 4 {
		t.Fatalf("dead backend reported %d times for 4 connections, want 1 per connection at most", n)
	}
	for _, st := range tp.p.Stats() {
		if st.Addr == a.addr && st.DialErrors != uint64(fb.failuresOf(a.addr)) {
			t.Fatalf("dial errors %d, reported failures %d", st.DialErrors, fb.failuresOf(a.addr))
		}
	}
}

// TestSetConfigRace changes the configuration while connections come and go (run with -race).
func TestSetConfigRace(t *testing.T) {
	be := startBackend(t, echo)
	tp := startProxy(t, Config{}, newFakeBackends(be.addr))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = tp.p.SetConfig(Config{Balance: Balance(i % 2), MaxConns: 100 + i%3, IdleTimeout: time.Duration(i%2) * time.Minute,
				KeepAlive: time.Duration(1+i%3) * time.Second, Retries: i % 3})
			time.Sleep(100 * time.Microsecond)
		}
	})
	for i := range 50 {
		c := dial(t, tp.addr)
		if r, err := roundTrip(c, "x"); err != nil || r != "x" {
			t.Fatalf("connection %d: %q, %v", i, r, err)
		}
		_ = c.Close()
	}
	close(stop)
	wg.Wait()
}
