package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/internal/testutil"
)

// TestLoopGuard lists the proxy's own listening address among its backends (127.0.0.1:P): dials to it are
// refused before they connect, counted, never reported to the health source, and the next backend serves.
func TestLoopGuard(t *testing.T) {
	good := startBackend(t, named("good"))
	reg := prometheus.NewPedanticRegistry()
	fb := newFakeBackends()
	tp := startProxy(t, Config{Metrics: NewMetrics(reg).Frontend("api")}, fb)
	self := tp.addr

	fb.set(self, good.addr)
	for i := range 6 {
		c, name := nameOf(t, tp.addr)
		if name != "good" {
			t.Fatalf("connection %d: served by %q", i, name)
		}
		_ = c.Close()
	}
	if n := good.accepted.Load(); n != 6 {
		t.Fatalf("good backend accepted %d connections for 6 clients", n)
	}
	if got := metricValue(t, reg, fmt.Sprintf(`vipd_proxy_loop_dials_total{backend=%q,frontend="api"}`, self)); got != 3 {
		t.Fatalf("loop dials = %v, want 3 (round robin picks the own address every other connection)", got)
	}

	fb.set(self) // only itself: refused at once
	expectRefused(t, tp.addr, 2*time.Second)
	if n := fb.failuresOf(self); n != 0 {
		t.Fatalf("the own address was reported as a failing backend %d times", n)
	}
	for _, s := range tp.p.Stats() {
		if s.Addr == self && (s.Total != 0 || s.DialErrors != 0) {
			t.Fatalf("own address stats %+v: no connection and no dial error expected", s)
		}
	}
	testutil.WaitFor(t, 2*time.Second, "no connection left open", func() bool { return tp.p.Counters().Active == 0 })
}

func TestLoopBefore(t *testing.T) {
	p, err := New(Config{}, newFakeBackends())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"10.0.0.11:6443", "0.0.0.0:9345", "[::]:8132"} {
		p.addListen(netip.MustParseAddrPort(l))
	}
	tests := []struct {
		dst  string
		want loopVerdict
	}{
		{"10.0.0.11:6443", isLoop},
		{"10.0.0.12:6443", notLoop},
		{"10.0.0.11:6444", notLoop},
		{"127.0.0.1:9345", isLoop},
		{"127.0.0.53:9345", isLoop},
		{"0.0.0.0:9345", isLoop},
		{"10.0.0.11:9345", checkAfter},
		{"[::1]:9345", notLoop}, // 0.0.0.0 does not take IPv6
		{"[::1]:8132", isLoop},
		{"127.0.0.1:8132", isLoop}, // [::] takes IPv4 too
		{"[::ffff:127.0.0.1]:8132", isLoop},
		{"[fd00::1]:8132", checkAfter},
		{"10.0.0.21:8132", checkAfter},
	}
	for _, tt := range tests {
		if got, _ := p.loopBefore(netip.MustParseAddrPort(tt.dst)); got != tt.want {
			t.Errorf("loopBefore(%s) = %v, want %v", tt.dst, got, tt.want)
		}
	}
	p.removeListen(netip.MustParseAddrPort("0.0.0.0:9345"))
	if got, _ := p.loopBefore(netip.MustParseAddrPort("127.0.0.1:9345")); got != notLoop {
		t.Errorf("after its Serve ended, a listener still guards: %v", got)
	}
}

// childEnv tells a re-executed test binary that it runs inside the network namespace its parent made.
const childEnv = "VIPD_PROXY_NETNS_CHILD"

// runInNetns re-runs the calling test in a new network namespace with lo up and holding addr as well, and reports whether the caller is that child (true: run the test body) or the parent (false: the
// child's result is already reported). It skips without root or iproute2.
func runInNetns(t *testing.T, addr string) bool {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
	name := fmt.Sprintf("vipp-%d-%d", os.Getpid(), nsCounter.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	for _, args := range [][]string{
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "addr", "add", addr + "/32", "dev", "lo"}, // local, not loopback: like a VIP on lo
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", name, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+addr)
	out, err := cmd.CombinedOutput()
	t.Logf("child in netns %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("child test failed: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatal("child test did not pass (skipped or did not run)")
	}
	return false
}

var nsCounter atomic.Int64

// TestLoopGuardWildcard runs in its own network namespace: the proxy listens on [::]:P, and its backends
// name it through a local non-loopback address (only the connected socket's address tells: the connection is
// closed right after the connect, and the loop stays bounded), through loopback, and through a host name.
func TestLoopGuardWildcard(t *testing.T) {
	const local = "10.213.0.1"
	if !runInNetns(t, local) {
		return
	}
	good := startBackend(t, named("good"))
	reg := prometheus.NewPedanticRegistry()
	fb := newFakeBackends()
	p, err := New(Config{Logger: testLogger(t), Metrics: NewMetrics(reg)}, fb)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := p.Listen(t.Context(), ":0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	addr := net.JoinHostPort(local, port)
	loops := func(backend string) float64 {
		v, _ := flatten(t, reg)[fmt.Sprintf(`vipd_proxy_loop_dials_total{backend=%q}`, backend)]
		return v
	}

	t.Run("local address, found after connecting", func(t *testing.T) {
		fb.set(addr, good.addr)
		const n = 6
		for i := range n {
			c, name := nameOf(t, addr)
			if name != "good" {
				t.Fatalf("connection %d served by %q", i, name)
			}
			_ = c.Close()
		}
		testutil.WaitFor(t, 5*time.Second, "every connection released", func() bool { return p.Counters().Active == 0 })
		got := loops(addr)
		if got < 1 {
			t.Fatal("the loop through the local address was not detected")
		}
		// After the first detection the backend is refused before connecting, so at most the connection
		// that reached our own accept queue then (and a racing one) came around again.
		if a := good.accepted.Load(); a < n || a > n+2 {
			t.Fatalf("good backend accepted %d connections for %d clients: the loop was not bounded", a, n)
		}
		if f := fb.failuresOf(addr); f != 0 {
			t.Fatalf("the own address was reported as failing %d times", f)
		}
	})
	t.Run("loopback, refused before connecting", func(t *testing.T) {
		self := net.JoinHostPort("127.0.0.1", port)
		fb.set(self)
		expectRefused(t, addr, 2*time.Second)
		if loops(self) != 1 || fb.failuresOf(self) != 0 {
			t.Fatalf("loop dials %v, reported failures %d; want 1 and 0", loops(self), fb.failuresOf(self))
		}
	})
	t.Run("a host name, refused before connecting", func(t *testing.T) {
		self := net.JoinHostPort("localhost", port)
		fb.set(self)
		expectRefused(t, addr, 2*time.Second)
		if loops(self) != 1 || fb.failuresOf(self) != 0 {
			t.Fatalf("loop dials %v, reported failures %d; want 1 and 0", loops(self), fb.failuresOf(self))
		}
		_, err := p.config().dialer.DialContext(t.Context(), "tcp", self)
		if !errors.Is(err, errLoop) {
			t.Fatalf("dial by name: %v, want errLoop", err)
		}
	})
}

// BenchmarkLoopGuard measures what the guard adds to a dial: the check before connecting (every dial to an
// IP literal) and the getsockname after it (only a destination on a wildcard listener's port).
func BenchmarkLoopGuard(b *testing.B) {
	p, err := New(Config{}, newFakeBackends())
	if err != nil {
		b.Fatal(err)
	}
	p.addListen(netip.MustParseAddrPort("[::]:6443"))
	be := p.table.get("10.0.0.21:6443")
	b.Run("before", func(b *testing.B) {
		for b.Loop() {
			if v, _ := p.checkLoopBefore(be); v != checkAfter {
				b.Fatal(v)
			}
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	f, err := c.(*net.TCPConn).File()
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	b.Run("after", func(b *testing.B) {
		for b.Loop() {
			if !rawGetsockname(fd).IsValid() {
				b.Fatal("no local address")
			}
		}
	})
}
