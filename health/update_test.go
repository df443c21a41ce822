package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/internal/testutil"
)

// config returns the harness's Monitor configuration as startMonitor completed it, for Update.
func (h *harness) config() Config {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.m.cfg
}

// TestMonitorUpdateBackends walks a Monitor on a fake clock through a reload that keeps, removes and adds
// backends, checking what each kind keeps.
func TestMonitorUpdateBackends(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := startMonitor(t, Config{Rise: 2, Fall: 2, Metrics: NewMetrics(reg).Frontend("api")}, "up:1", "down:1", "gone:1")
	h.checker.setDown("down:1", true)
	h.first()
	h.next() // down: unhealthy after fall 2
	h.checker.setDown("down:1", false)
	h.next() // down: 1 success of rise 2, the history a reload must keep
	h.wantHealthy("up:1", "gone:1")
	if err := h.m.SetDrain("up:1", true); err != nil {
		t.Fatal(err)
	}
	before := map[string]BackendStatus{}
	for _, b := range h.m.Backends() {
		before[b.Addr] = b
	}
	goneCalls := h.checker.Calls("gone:1")
	ch, cancel := h.m.Subscribe()
	defer cancel()

	cfg := h.config()
	if err := h.m.Update(cfg, []Backend{{"down:1", 0}, {"up:1", 2}, {"new:1", 0}}); err != nil {
		t.Fatal(err)
	}
	if !pending(ch) {
		t.Fatal("Update did not signal subscribers")
	}
	h.wantHealthy() // up is drained (kept across the reload), down not yet risen, new unknown
	var order []string
	for _, b := range h.m.Backends() {
		order = append(order, b.Addr)
		switch b.Addr {
		case "up:1", "down:1":
			was := before[b.Addr]
			if b.State != was.State || !b.Since.Equal(was.Since) || !b.LastCheck.Equal(was.LastCheck) || b.Drained != was.Drained {
				t.Fatalf("%s changed by the reload:\n was %+v\n now %+v", b.Addr, was, b)
			}
		case "new:1":
			if b.State != StateUnknown || !b.LastCheck.IsZero() || b.Drained {
				t.Fatalf("added backend: %+v", b)
			}
		}
	}
	if want := []string{"down:1", "up:1", "new:1"}; !slices.Equal(order, want) {
		t.Fatalf("Backends order %v, want the new list's %v", order, want)
	}
	if w := h.status("up:1").Weight; w != 2 {
		t.Fatalf("kept backend's weight %d, want the new 2", w)
	}
	h.m.ReportDialFailure("gone:1", errDown) // removed: ignored, no panic
	if err := h.m.SetDrain("gone:1", true); !errors.Is(err, ErrUnknownBackend) {
		t.Fatalf("SetDrain of a removed backend: %v, want ErrUnknownBackend", err)
	}
	testutil.WaitFor(t, 2*time.Second, "one probe loop per backend", func() bool { return h.m.loops.Load() == 3 })

	// new's first check is due after its first delay; gone's abandoned timer is still in the fake clock.
	h.n = 4
	testutil.WaitFor(t, 2*time.Second, "the added backend's first timer", func() bool { return h.clock.Waiting() == 4 })
	h.step(100 * time.Millisecond)
	if s := h.status("new:1"); s.State != StateHealthy {
		t.Fatalf("added backend after its first check: %+v", s)
	}
	h.n = 3
	h.next() // down's second success: healthy, because its first one survived the reload
	if s := h.status("down:1"); s.State != StateHealthy {
		t.Fatalf("kept backend lost its rise history: %+v", s)
	}
	if err := h.m.SetDrain("up:1", false); err != nil {
		t.Fatal(err)
	}
	h.wantHealthy("up:1", "down:1", "new:1", "up:1") // weights 1:2:1
	if n := h.checker.Calls("gone:1"); n != goneCalls {
		t.Fatalf("removed backend checked %d more times", n-goneCalls)
	}
	for _, m := range gather(t, reg) {
		for k := range m {
			if regexpGone.MatchString(k) {
				t.Errorf("series of the removed backend still exported: %s", k)
			}
		}
	}
	if got := gaugeKey(t, reg, `vipd_backend_health_state{backend="new:1",frontend="api"}`); got != 1 {
		t.Fatalf("added backend's state gauge = %v, want 1", got)
	}
}

// TestMonitorUpdateInvalidChangesNothing checks that a rejected Update leaves the Monitor as it was.
func TestMonitorUpdateInvalidChangesNothing(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1}, "a:1", "b:1")
	h.first()
	cfg := h.config()
	tests := []struct {
		name     string
		mutate   func(*Config)
		backends []Backend
		want     string
	}{
		{"duplicate", func(*Config) {}, BackendList("a:1", "c:1", "a:1"), "Backends: a:1 is listed twice: list each backend once"},
		{"bad weight", func(*Config) {}, []Backend{{"a:1", 0}, {"c:1", 999}}, "Backends[1].Weight: weight 999 of c:1 is out of range 1-256 (0 or unset means 1)"},
		{"min-healthy above backends", func(c *Config) { c.MinHealthy = 3 }, BackendList("a:1", "c:1"), "MinHealthy: must be between 0 and the number of backends (2), got 3"},
		{"no checker", func(c *Config) { c.Checker = nil }, BackendList("c:1"), "Checker: no health checker configured"},
		{"zero interval", func(c *Config) { c.Interval = 0 }, BackendList("c:1"), "Interval: must be greater than 0, got 0s: e.g. 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := cfg
			tt.mutate(&bad)
			err := h.m.Update(bad, tt.backends)
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Update error %v, want %q", err, tt.want)
			}
			h.wantHealthy("a:1", "b:1")
			if got := h.config(); got.Interval != cfg.Interval || got.MinHealthy != cfg.MinHealthy || got.Checker != cfg.Checker {
				t.Fatalf("config changed by a rejected Update: %+v", got)
			}
			if n := len(h.m.Backends()); n != 2 {
				t.Fatalf("%d backends after a rejected Update", n)
			}
		})
	}
}

// TestMonitorUpdateChecks changes the check settings of a running Monitor: the Checker from the next check,
// Rise/Fall keeping the state, Interval rescheduling a wait in progress.
func TestMonitorUpdateChecks(t *testing.T) {
	h := startMonitor(t, Config{Rise: 3, Fall: 3}, "a:1")
	h.first()
	h.wantHealthy("a:1")
	cfg := h.config()

	// Fall 3 -> 1 keeps a healthy backend healthy; the next failure, judged by the new Fall, takes it out.
	cfg.Fall = 1
	if err := h.m.Update(cfg, BackendList("a:1")); err != nil {
		t.Fatal(err)
	}
	h.wantHealthy("a:1")

	// A new Checker answers from the next check on.
	other := newFakeChecker()
	other.setDown("a:1", true)
	cfg.Checker = other
	if err := h.m.Update(cfg, BackendList("a:1")); err != nil {
		t.Fatal(err)
	}
	oldCalls := h.checker.Calls("a:1")
	h.next()
	if h.checker.Calls("a:1") != oldCalls || other.Calls("a:1") != 1 {
		t.Fatalf("after the Checker changed: old checker %d calls (was %d), new %d; want 0 more and 1",
			h.checker.Calls("a:1"), oldCalls, other.Calls("a:1"))
	}
	h.wantHealthy() // one failure with Fall 1

	// Interval 2s -> 500ms while 300ms into a wait: the check comes 500ms after the last one, not 2s.
	h.step(300 * time.Millisecond)
	cfg.Interval = 500 * time.Millisecond
	if err := h.m.Update(cfg, BackendList("a:1")); err != nil {
		t.Fatal(err)
	}
	h.n = 2 // the old timer stays in the fake clock until it is due
	testutil.WaitFor(t, 2*time.Second, "the wait to be rescheduled", func() bool { return h.clock.Waiting() == 2 })
	if asked := h.clock.Asked(); asked[len(asked)-1] != 200*time.Millisecond {
		t.Fatalf("rescheduled wait %v, want the 200ms left of the new 500ms interval", asked[len(asked)-1])
	}
	calls := other.Calls("a:1")
	h.step(199 * time.Millisecond)
	if other.Calls("a:1") != calls {
		t.Fatal("checked before the new interval was up")
	}
	h.step(time.Millisecond)
	if other.Calls("a:1") != calls+1 {
		t.Fatal("not checked when the new interval was up")
	}
}

// churnChecker: "stable" addresses always pass, "sick" ones always fail, the rest pass or fail at random.
type churnChecker struct {
	mu    sync.Mutex
	calls map[string]int
	rnd   *rand.Rand
}

func (c *churnChecker) Check(ctx context.Context, addr string) error {
	c.mu.Lock()
	c.calls[addr]++
	fail := c.rnd.IntN(3) == 0
	c.mu.Unlock()
	switch {
	case addr == "stable:1":
		return nil
	case addr == "sick:1" || fail:
		return errDown
	}
	return ctx.Err()
}

func (c *churnChecker) Calls(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[addr]
}

// TestMonitorUpdateUnderChurn reloads a running Monitor (real clock, 1 ms checks, random results, passive
// failures and readers racing) fifty times, adding and removing backends and changing every check setting:
// the backends in every list keep their state and since-time, removed ones leave Healthy at once and lose
// their goroutine, and Run ends with none left (goleak checks the rest).
func TestMonitorUpdateUnderChurn(t *testing.T) {
	checker := &churnChecker{calls: map[string]int{}, rnd: rand.New(rand.NewPCG(1, 2))}
	pool := []string{"x0:1", "x1:1", "x2:1", "x3:1", "x4:1", "x5:1", "x6:1", "x7:1"}
	cfg := Config{Interval: time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 1, Fall: 1, Checker: checker,
		Logger: testutil.NewLogSink(t).Logger(slog.LevelError), FirstDelay: func(time.Duration) time.Duration { return 0 }}
	m, err := NewMonitor(cfg, BackendList(append([]string{"stable:1", "sick:1"}, pool[:4]...)...))
	if err != nil {
		t.Fatal(err)
	}
	node := NewNode()
	node.SetFrontend("api", m)
	node.SetListenerUp("api", true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		if n := m.loops.Load(); n != 0 {
			t.Errorf("%d probe loops left after Run returned", n)
		}
	}()

	status := func(addr string) BackendStatus {
		for _, b := range m.Backends() {
			if b.Addr == addr {
				return b
			}
		}
		t.Fatalf("%s is gone", addr)
		return BackendStatus{}
	}
	testutil.WaitFor(t, 5*time.Second, "stable healthy and sick unhealthy", func() bool {
		return status("stable:1").State == StateHealthy && status("sick:1").State == StateUnhealthy
	})
	stableSince, sickSince := status("stable:1").Since, status("sick:1").Since

	// Racers: passive failures on pool addresses (current or removed), readers of every view.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; !stop.Load(); i++ {
			m.ReportDialFailure(pool[i%len(pool)], errDown)
			time.Sleep(50 * time.Microsecond) // pacing, so the racers do not starve the probe loops on 2 cores
		}
	})
	wg.Go(func() {
		for !stop.Load() {
			for _, a := range m.Healthy() {
				if a == "" || a == "sick:1" {
					t.Errorf("Healthy returned %q", a)
					return
				}
			}
			_ = node.Status()
			time.Sleep(50 * time.Microsecond)
		}
	})
	defer func() { stop.Store(true); wg.Wait() }()

	rnd := rand.New(rand.NewPCG(3, 4))
	for i := range 50 {
		list := []Backend{{"stable:1", 1 + rnd.IntN(4)}, {"sick:1", 0}}
		for _, a := range pool {
			if rnd.IntN(2) == 0 {
				list = append(list, Backend{a, rnd.IntN(5)})
			}
		}
		rnd.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
		next := cfg
		next.Interval = time.Duration(1+rnd.IntN(3)) * time.Millisecond
		next.Timeout = time.Duration(20+rnd.IntN(50)) * time.Millisecond
		next.Rise, next.Fall = 1+rnd.IntN(3), 1+rnd.IntN(3)
		next.MinHealthy = rnd.IntN(2)
		if err := m.Update(next, list); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		in := map[string]bool{}
		for _, b := range list {
			in[b.Addr] = true
		}
		for _, a := range m.Healthy() {
			if !in[a] {
				t.Fatalf("reload %d: removed backend %s still in Healthy %v", i, a, m.Healthy())
			}
		}
		var got []string
		for _, b := range m.Backends() {
			got = append(got, b.Addr)
		}
		var want []string
		for _, b := range list {
			want = append(want, b.Addr)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("reload %d: Backends %v, want %v", i, got, want)
		}
		if s := status("stable:1"); s.State != StateHealthy || !s.Since.Equal(stableSince) {
			t.Fatalf("reload %d: the always-passing backend changed: %+v (since %v)", i, s, stableSince)
		}
		if s := status("sick:1"); s.State != StateUnhealthy || !s.Since.Equal(sickSince) {
			t.Fatalf("reload %d: the always-failing backend changed: %+v (since %v)", i, s, sickSince)
		}
		testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("reload %d: one probe loop per backend", i), func() bool {
			return int(m.loops.Load()) == len(list)
		})
		// Give the new settings a few checks before the next reload.
		c := checker.Calls("stable:1")
		testutil.WaitFor(t, 5*time.Second, "a few checks", func() bool { return checker.Calls("stable:1") >= c+3 })
	}

	// Finally drop the whole pool: their checks stop (at most one that raced the removal).
	if err := m.Update(cfg, BackendList("stable:1", "sick:1")); err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, a := range pool {
		calls[a] = checker.Calls(a)
	}
	c := checker.Calls("stable:1")
	testutil.WaitFor(t, 5*time.Second, "20 more checks of a kept backend", func() bool { return checker.Calls("stable:1") >= c+20 })
	for _, a := range pool {
		if n := checker.Calls(a) - calls[a]; n > 1 {
			t.Fatalf("removed backend %s checked %d times after its removal", a, n)
		}
	}
	if n := m.loops.Load(); n != 2 {
		t.Fatalf("%d probe loops for 2 backends", n)
	}
}
