package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRoundRobinSpreadsOverThreeBackends(t *testing.T) {
	names := []string{"a", "b", "c"}
	var addrs []string
	for _, n := range names {
		addrs = append(addrs, startBackend(t, named(n)).addr)
	}
	tp := startProxy(t, Config{}, newFakeBackends(addrs...))

	got := map[string]int{}
	for i := range 30 {
		c := dial(t, tp.addr)
		name, err := readLine(c)
		if err != nil {
			t.Fatalf("conn %d: read backend name: %v", i, err)
		}
		if reply, err := roundTrip(c, "ping"); err != nil || reply != "ping" {
			t.Fatalf("conn %d: echo %q, %v", i, reply, err)
		}
		got[name]++
		_ = c.Close()
	}
	for _, n := range names {
		if got[n] != 10 {
			t.Fatalf("connections per backend %v, want 10 each", got)
		}
	}
	waitFor(t, 2*time.Second, "stats to settle", func() bool { return tp.p.Counters().Active == 0 })
	for _, s := range tp.p.Stats() {
		if s.Total != 10 || s.Active != 0 || s.BytesUpstream != 40 || s.BytesDownstream != 10*(2+4) {
			t.Fatalf("stats %+v, want Total 10, Active 0, 40 bytes up, 60 down", s)
		}
	}
}

func TestLeastConnPrefersIdleBackend(t *testing.T) {
	a, b := startBackend(t, named("a")), startBackend(t, named("b"))
	tp := startProxy(t, Config{Balance: LeastConn}, newFakeBackends(a.addr, b.addr))

	c1 := dial(t, tp.addr)
	n1, err := readLine(c1)
	if err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, tp.addr)
	n2, err := readLine(c2)
	if err != nil {
		t.Fatal(err)
	}
	if n1 == n2 {
		t.Fatalf("two connections both went to %q; least-conn should split them", n1)
	}
	// Free n2's backend: whatever the round-robin cursor says, the next connections go where load is least.
	_ = c2.Close()
	waitFor(t, 2*time.Second, "closed connection to be released", func() bool { return tp.p.Counters().Active == 1 })
	for i := range 3 {
		c := dial(t, tp.addr)
		n, err := readLine(c)
		if err != nil {
			t.Fatal(err)
		}
		if n != n2 {
			t.Fatalf("connection %d went to %q (1 active) instead of %q (0 active)", i, n, n2)
		}
		_ = c.Close()
		waitFor(t, 2*time.Second, "release", func() bool { return tp.p.Counters().Active == 1 })
	}
}

func TestDeadBackendIsRetriedAndReported(t *testing.T) {
	bs := []*testBackend{startBackend(t, echo), startBackend(t, echo), startBackend(t, echo)}
	fb := newFakeBackends(bs[0].addr, bs[1].addr, bs[2].addr)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	tp := startProxy(t, Config{Metrics: m}, fb)

	for i := range 30 {
		if i == 10 {
			bs[1].kill() // still listed healthy: the health checker has not noticed yet
		}
		c := dial(t, tp.addr)
		if reply, err := roundTrip(c, "hello"); err != nil || reply != "hello" {
			t.Fatalf("conn %d: echo %q, %v; a dead backend must be hidden by retries", i, reply, err)
		}
		_ = c.Close()
	}
	if n := fb.failuresOf(bs[1].addr); n == 0 {
		t.Fatal("ReportDialFailure never called for the dead backend")
	}
	if n := counterValue(t, m.v.dialErrors.WithLabelValues("", bs[1].addr)); n == 0 {
		t.Fatal("dial error not counted in vipd_proxy_dial_errors_total")
	}
	for _, s := range tp.p.Stats() {
		if s.Addr == bs[1].addr && s.DialErrors == 0 {
			t.Fatalf("stats %+v: dial errors not counted", s)
		}
	}
	if got := bs[0].accepted.Load() + bs[1].accepted.Load() + bs[2].accepted.Load(); got != 30 {
		t.Fatalf("backends accepted %d connections in all, want exactly the 30 clients", got)
	}
}

func TestNoHealthyBackendResetsAtOnceAndLogsOncePerOutage(t *testing.T) {
	counter := countingHandler{next: testLogger(t).Handler(), mu: &sync.Mutex{}, msgs: map[string]int{}}
	fb := newFakeBackends()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	tp := startProxy(t, Config{Logger: slog.New(counter), Metrics: m}, fb)

	for i := range 5 {
		if took := expectRefused(t, tp.addr, 2*time.Second); took > 500*time.Millisecond {
			t.Fatalf("conn %d closed after %v; want an immediate reset", i, took)
		}
	}
	// A backend listed healthy but refusing connects is an outage too.
	dead := startBackend(t, echo)
	dead.kill()
	fb.set(dead.addr)
	expectRefused(t, tp.addr, 2*time.Second)
	if n := counter.count("no healthy backend"); n != 1 {
		t.Fatalf("outage logged %d times, want once", n)
	}

	live := startBackend(t, echo)
	fb.set(live.addr)
	c := dial(t, tp.addr)
	if reply, err := roundTrip(c, "x"); err != nil || reply != "x" {
		t.Fatalf("echo after recovery: %q, %v", reply, err)
	}
	fb.set()
	expectRefused(t, tp.addr, 2*time.Second)
	expectRefused(t, tp.addr, 2*time.Second)
	if n := counter.count("no healthy backend"); n != 2 {
		t.Fatalf("two outages logged %d times, want 2", n)
	}
	if got := tp.p.Counters().RefusedNoBackend; got != 8 {
		t.Fatalf("RefusedNoBackend = %d, want 8", got)
	}
	if got := counterValue(t, m.v.refused.WithLabelValues("", reasonNoBackend)); got != 8 {
		t.Fatalf("vipd_proxy_refused_total{reason=no_backend} = %v, want 8", got)
	}
}

func TestHalfClose(t *testing.T) {
	t.Run("client closes write, backend still replies", func(t *testing.T) {
		be := startBackend(t, func(c net.Conn) {
			data, err := io.ReadAll(c) // until the client's FIN arrives through the proxy
			if err != nil {
				return
			}
			_, _ = fmt.Fprintf(c, "got %d bytes: %s", len(data), data)
		})
		tp := startProxy(t, Config{}, newFakeBackends(be.addr))
		c := dial(t, tp.addr)
		if _, err := io.WriteString(c, "request"); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		reply, err := io.ReadAll(c)
		if err != nil || string(reply) != "got 7 bytes: request" {
			t.Fatalf("reply %q, %v", reply, err)
		}
	})
	t.Run("backend closes write, client still sends", func(t *testing.T) {
		received := make(chan string, 1)
		be := startBackend(t, func(c net.Conn) {
			if _, err := io.WriteString(c, "banner"); err != nil {
				return
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				return
			}
			data, _ := io.ReadAll(c)
			received <- string(data)
		})
		tp := startProxy(t, Config{}, newFakeBackends(be.addr))
		c := dial(t, tp.addr)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		banner, err := io.ReadAll(c) // EOF must arrive while our write side is still open
		if err != nil || string(banner) != "banner" {
			t.Fatalf("banner %q, %v", banner, err)
		}
		if _, err := io.WriteString(c, "late data"); err != nil {
			t.Fatal(err)
		}
		_ = c.CloseWrite()
		select {
		case got := <-received:
			if got != "late data" {
				t.Fatalf("backend received %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("backend did not receive the client's data after its own half-close")
		}
	})
}

func TestMaxConnsRefusesOverLimit(t *testing.T) {
	be := startBackend(t, echo)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	tp := startProxy(t, Config{MaxConns: 2, Metrics: m}, newFakeBackends(be.addr))
	c1, c2 := dial(t, tp.addr), dial(t, tp.addr)
	for _, c := range []net.Conn{c1, c2} {
		if r, err := roundTrip(c, "ok"); err != nil || r != "ok" {
			t.Fatalf("echo under the limit: %q, %v", r, err)
		}
	}
	if took := expectRefused(t, tp.addr, 2*time.Second); took > 500*time.Millisecond {
		t.Fatalf("over-limit connection closed after %v; want immediately", took)
	}
	if got := tp.p.Counters().RefusedMaxConns; got != 1 {
		t.Fatalf("RefusedMaxConns = %d, want 1", got)
	}
	if got := counterValue(t, m.v.refused.WithLabelValues("", reasonMaxConns)); got != 1 {
		t.Fatalf("vipd_proxy_refused_total{reason=max_conns} = %v, want 1", got)
	}
	_ = c1.Close()
	waitFor(t, 2*time.Second, "slot to free", func() bool { return tp.p.Counters().Active == 1 })
	if r, err := roundTrip(dial(t, tp.addr), "again"); err != nil || r != "again" {
		t.Fatalf("echo after a slot freed: %q, %v", r, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	be := startBackend(t, echo)
	const idle = 150 * time.Millisecond
	tp := startProxy(t, Config{IdleTimeout: idle}, newFakeBackends(be.addr))

	quiet, busy := dial(t, tp.addr), dial(t, tp.addr)
	for _, c := range []net.Conn{quiet, busy} {
		if _, err := roundTrip(c, "hi"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// Keep busy talking every idle/3 for 3 idle periods: it must survive; quiet must be closed.
	for time.Since(start) < 3*idle {
		if r, err := roundTrip(busy, "tick"); err != nil || r != "tick" {
			t.Fatalf("active connection broken after %v: %q, %v", time.Since(start), r, err)
		}
		time.Sleep(idle / 3)
	}
	took := expectClosed(t, quiet, 2*time.Second) + 3*idle
	if took < idle {
		t.Fatalf("idle connection closed after %v, before the %v idle timeout", took, idle)
	}
	waitFor(t, 2*time.Second, "idle conn released", func() bool { return tp.p.Counters().Active == 1 })
}

func TestDrainOnShutdown(t *testing.T) {
	be := startBackend(t, echo)
	tp := startProxy(t, Config{DrainTimeout: 5 * time.Second}, newFakeBackends(be.addr))
	c := dial(t, tp.addr)
	if _, err := roundTrip(c, "before"); err != nil {
		t.Fatal(err)
	}
	tp.stop()
	waitFor(t, 2*time.Second, "listener to close", func() bool {
		nc, err := net.DialTimeout("tcp", tp.addr, time.Second)
		if err == nil {
			_ = nc.Close()
		}
		return err != nil
	})
	if r, err := roundTrip(c, "during drain"); err != nil || r != "during drain" {
		t.Fatalf("open connection broken during drain: %q, %v", r, err)
	}
	select {
	case err := <-tp.done:
		t.Fatalf("Serve returned %v while a connection was still open", err)
	case <-time.After(50 * time.Millisecond):
	}
	_ = c.Close()
	select {
	case err := <-tp.done:
		tp.done <- err
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the last connection closed")
	}
}

func TestDrainTimeoutForcesClose(t *testing.T) {
	be := startBackend(t, echo)
	const drain = 200 * time.Millisecond
	tp := startProxy(t, Config{DrainTimeout: drain}, newFakeBackends(be.addr))
	c := dial(t, tp.addr)
	if _, err := roundTrip(c, "x"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := tp.shutdown(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if took := time.Since(start); took < drain || took > drain+2*time.Second {
		t.Fatalf("Serve returned after %v, want about the %v drain timeout", took, drain)
	}
	expectClosed(t, c, 2*time.Second)
}

func TestServeAcceptErrorIsReturned(t *testing.T) {
	p, err := New(Config{Logger: testLogger(t)}, newFakeBackends())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = ln.Close()
	if err := p.Serve(t.Context(), ln); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve on a closed listener: %v, want an accept error", err)
	}
}

// counterValue reads a counter without prometheus/testutil (whose dependencies are not in go.sum).
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// wrappedListener hides the *net.TCPListener, so Serve accepts through ln.Accept instead of raw accept4.
type wrappedListener struct{ net.Listener }

// TestServeAcceptPaths proxies through each accept path: raw accept4 on a Listen listener (keepalive and
// TCP_NODELAY inherited), on a plain net.Listen listener (both set per connection), and ln.Accept on a
// listener Serve cannot see through.
func TestServeAcceptPaths(t *testing.T) {
	be := startBackend(t, echo)
	tests := []struct {
		name string
		ln   func(p *Proxy) (net.Listener, error)
	}{
		{"Listen", func(p *Proxy) (net.Listener, error) { return p.Listen(t.Context(), "127.0.0.1:0") }},
		{"net.Listen", func(*Proxy) (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }},
		{"wrapped", func(*Proxy) (net.Listener, error) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			return wrappedListener{ln}, err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(Config{Logger: testLogger(t)}, newFakeBackends(be.addr))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tt.ln(p)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Serve(ctx, ln) }()
			for i := range 3 {
				c := dial(t, ln.Addr().String())
				if r, err := roundTrip(c, "hello"); err != nil || r != "hello" {
					t.Fatalf("conn %d: echo %q, %v", i, r, err)
				}
				_ = c.Close()
			}
			waitFor(t, 2*time.Second, "release", func() bool { return p.Counters().Active == 0 })
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}
