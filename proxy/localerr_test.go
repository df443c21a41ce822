package proxy

import (
	"context"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/internal/testutil"
)

// countingBackends forwards to a Backends and counts ReportDialFailure calls.
type countingBackends struct {
	Backends
	mu       sync.Mutex
	failures int
}

func (c *countingBackends) ReportDialFailure(addr string, err error) {
	c.mu.Lock()
	c.failures++
	c.mu.Unlock()
	c.Backends.ReportDialFailure(addr, err)
}

func (c *countingBackends) reported() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failures
}

// fdBudget lowers this process's RLIMIT_NOFILE soft limit to a little above what is open now and fills the
// room with duplicates, so the next socket() fails with EMFILE; free(n) gives n descriptors back. The limit
// and the descriptors are restored when the test ends.
type fdBudget struct {
	t     *testing.T
	spare []int
}

func newFDBudget(t *testing.T) *fdBudget {
	t.Helper()
	var orig unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open descriptors: %v", err)
	}
	low := orig
	low.Cur = uint64(len(open) + 64)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Skipf("cannot lower RLIMIT_NOFILE: %v", err)
	}
	b := &fdBudget{t: t}
	t.Cleanup(func() {
		b.free(len(b.spare))
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &orig); err != nil {
			t.Errorf("restore RLIMIT_NOFILE: %v", err)
		}
	})
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	b.spare = append(b.spare, p[0], p[1])
	b.fill()
	return b
}

// fill takes every free descriptor. Descriptors come free on their own too (the finalizer of an *os.File
// an earlier test dropped), so exact calls it again right before freeing.
func (b *fdBudget) fill() {
	for {
		fd, err := unix.FcntlInt(uintptr(b.spare[0]), unix.F_DUPFD_CLOEXEC, 0)
		if err == unix.EMFILE {
			return
		}
		if err != nil {
			b.t.Fatalf("fill descriptors: %v", err)
		}
		b.spare = append(b.spare, fd)
	}
}

// exact leaves exactly n descriptors free.
func (b *fdBudget) exact(n int) {
	b.fill()
	b.free(n)
}

// free closes n of the filler descriptors.
func (b *fdBudget) free(n int) {
	for range n {
		last := len(b.spare) - 1
		_ = unix.Close(b.spare[last])
		b.spare = b.spare[:last]
	}
}

// TestLocalErrorsStayLocal runs a proxy out of file descriptors for real (RLIMIT_NOFILE lowered, the room
// filled): a dial that fails with EMFILE refuses the client at once, tries no other backend, reports nothing
// to the health Monitor (whose Fall of 1 would take the backend out on one report), and is counted; an accept
// that fails with EMFILE is retried, counted and logged once.
func TestLocalErrorsStayLocal(t *testing.T) {
	a, b := startBackend(t, echo), startBackend(t, echo)
	mon, err := health.NewMonitor(health.Config{Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1,
		Checker: health.NewTCPChecker(), FirstDelay: func(time.Duration) time.Duration { return 0 }},
		health.BackendList(a.addr, b.addr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-monDone })
	testutil.WaitFor(t, 5*time.Second, "both backends healthy", func() bool { return len(mon.Healthy()) == 2 })

	reg := prometheus.NewPedanticRegistry()
	metrics := NewMetrics(reg).Frontend("api")
	sink := testutil.NewLogSink(t)
	hb := &countingBackends{Backends: mon}
	tp := startProxy(t, Config{Metrics: metrics, Retries: 1, Logger: sink.Logger(slog.LevelDebug)}, hb)
	if r, err := roundTrip(dial(t, tp.addr), "warm"); err != nil || r != "warm" {
		t.Fatalf("before the fd limit: %q, %v", r, err)
	}
	accepted := a.accepted.Load() + b.accepted.Load()

	runtime.GC() // let finalizers close what earlier tests dropped before the count
	budget := newFDBudget(t)
	for i := range 3 {
		budget.exact(2) // one for the client's socket, one for the proxy's accept: its dial gets EMFILE
		// With every descriptor taken, accept4 fails with EMFILE even with nothing queued (the kernel
		// allocates the descriptor first), so the accept loop may be in its back-off (up to 1 s) here.
		start := time.Now()
		c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second)
		switch {
		case err == nil:
			expectClosed(t, c, 5*time.Second)
			_ = c.Close() // give its descriptor back for the next round
		case !isReset(err): // a reset already seen by the connect is a refusal too
			t.Fatalf("connection %d: client dial: %v", i, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Fatalf("connection %d refused after %v", i, took)
		}
	}
	if n := hb.reported(); n != 0 {
		t.Fatalf("ReportDialFailure called %d times for local errors", n)
	}
	for _, s := range mon.Backends() {
		if s.State != health.StateHealthy {
			t.Fatalf("backend marked %v by a local error: %+v", s.State, s)
		}
	}
	if got := a.accepted.Load() + b.accepted.Load(); got != accepted {
		t.Fatalf("backends accepted %d connections during the fd shortage", got-accepted)
	}
	want := map[string]float64{
		`vipd_proxy_refused_total{frontend="api",reason="local_error"}`: 3,
		`vipd_proxy_refused_total{frontend="api",reason="no_backend"}`:  0,
	}
	if got := metricValue(t, reg, `vipd_proxy_local_errors_total{errno="EMFILE",frontend="api"}`); got < 3 {
		t.Errorf("local errors = %v, want at least the 3 dials (accepts count too)", got)
	}
	// One dial per connection: the other healthy backend was not tried (its dial would have failed the same
	// way and been one more line held back).
	suppressed := tp.p.dialLog.Suppressed()
	if suppressed != 2 {
		t.Errorf("%d local dial errors held back after the one logged, want 2 (one dial per refused connection)", suppressed)
	}
	for k, v := range want {
		if got := metricValue(t, reg, k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	for _, s := range tp.p.Stats() {
		if s.DialErrors != 0 {
			t.Fatalf("local errors counted as the backend's dial errors: %+v", s)
		}
	}
	if got := tp.p.Counters().RefusedLocal; got != 3 {
		t.Fatalf("RefusedLocal = %d, want 3", got)
	}
	if n := sink.CountLinesSince(0, "local resource error: dial failed"); n != 1 {
		t.Fatalf("%d log lines for 3 local dial errors within a minute, want 1", n)
	}

	// Now the accept: no descriptor left for it.
	budget.free(len(budget.spare))
	t.Run("accept", func(t *testing.T) {
		b2 := newFDBudget(t)
		b2.free(1)                                               // only the client's socket
		c, err := net.DialTimeout("tcp", tp.addr, 5*time.Second) // no t.Cleanup: closed before the budget's
		if err != nil {
			t.Fatalf("client dial: %v", err)
		}
		defer c.Close()
		before := metricValue(t, reg, `vipd_proxy_local_errors_total{errno="EMFILE",frontend="api"}`)
		testutil.WaitFor(t, 5*time.Second, "accept errors to be counted", func() bool {
			return metricValue(t, reg, `vipd_proxy_local_errors_total{errno="EMFILE",frontend="api"}`) >= before+3
		})
		b2.free(len(b2.spare)) // room again: the pending connection is accepted and served
		if r, err := roundTrip(c, "late"); err != nil || r != "late" {
			t.Fatalf("connection accepted after the shortage: %q, %v", r, err)
		}
		if n := sink.CountLinesSince(0, "local resource error: accept failed"); n != 1 {
			t.Fatalf("%d log lines for repeated accept errors within a minute, want 1:\n%s", n, sink)
		}
		held := tp.p.acceptLog.Suppressed()
		if held < 3 {
			t.Fatalf("%d accept errors held back, want the repeated ones (at least 3)", held)
		}
		if !strings.Contains(sink.String(), "errno=EMFILE") {
			t.Fatal("the log line does not name the errno")
		}
	})
	if n := hb.reported(); n != 0 {
		t.Fatalf("ReportDialFailure called %d times", n)
	}
}
