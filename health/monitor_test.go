package health

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const testInterval = 2 * time.Second

// harness runs a Monitor on a fake clock and a fake checker.
type harness struct {
	t       *testing.T
	m       *Monitor
	clock   *fakeClock
	checker *fakeChecker
	logs    *recordHandler
	n       int
}

// startMonitor runs a Monitor over backends until the test ends. Every
// backend's first check is due after 100 ms of fake time unless
// cfg.FirstDelay says otherwise.
func startMonitor(t *testing.T, cfg Config, backends ...string) *harness {
	t.Helper()
	return startMonitorWeighted(t, cfg, BackendList(backends...)...)
}

// startMonitorWeighted is startMonitor with weights.
func startMonitorWeighted(t *testing.T, cfg Config, backends ...Backend) *harness {
	t.Helper()
	h := &harness{t: t, clock: newFakeClock(), checker: newFakeChecker(), logs: newRecordHandler(t), n: len(backends)}
	if cfg.Interval == 0 {
		cfg.Interval = testInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Rise == 0 {
		cfg.Rise = 2
	}
	if cfg.Fall == 0 {
		cfg.Fall = 3
	}
	if cfg.FirstDelay == nil {
		cfg.FirstDelay = func(time.Duration) time.Duration { return 100 * time.Millisecond }
	}
	cfg.Checker, cfg.Clock, cfg.Logger = h.checker, h.clock, slog.New(h.logs)
	m, err := NewMonitor(cfg, backends)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	waitFor(t, 2*time.Second, func() bool { return h.clock.Waiting() == h.n })
	return h
}

// step advances fake time by d and waits until every check it triggered has
// been recorded (each backend goroutine is waiting on the clock again).
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	h.clock.Advance(d)
	waitFor(h.t, 2*time.Second, func() bool { return h.clock.Waiting() == h.n })
}

// first runs the first check of every backend; next runs one more.
func (h *harness) first() { h.t.Helper(); h.step(100 * time.Millisecond) }
func (h *harness) next()  { h.t.Helper(); h.step(testInterval) }

func (h *harness) status(addr string) BackendStatus {
	h.t.Helper()
	for _, b := range h.m.Backends() {
		if b.Addr == addr {
			return b
		}
	}
	h.t.Fatalf("no backend %s", addr)
	return BackendStatus{}
}

func (h *harness) wantHealthy(want ...string) {
	h.t.Helper()
	if got := h.m.Healthy(); !slices.Equal(got, want) {
		h.t.Fatalf("Healthy() = %q, want %q", got, want)
	}
}

func TestMonitorRiseFall(t *testing.T) {
	h := startMonitor(t, Config{Rise: 2, Fall: 3}, "a:1", "b:1", "c:1")
	h.wantHealthy()
	for _, b := range h.m.Backends() {
		if b.State != StateUnknown || !b.LastCheck.IsZero() || !b.Since.IsZero() {
			t.Fatalf("before any check: %+v", b)
		}
	}

	h.checker.setDown("b:1", true)
	h.first() // a, c: one success from unknown is enough; b: 1 failure
	h.wantHealthy("a:1", "c:1")
	if s := h.status("b:1"); s.State != StateUnknown || !strings.Contains(s.LastError, errDown.Error()) {
		t.Fatalf("b after one failure: %+v", s)
	}
	firstCheck := h.clock.Now()
	if s := h.status("a:1"); s.State != StateHealthy || !s.Since.Equal(firstCheck) || !s.LastCheck.Equal(firstCheck) || s.LastError != "" {
		t.Fatalf("a after first check: %+v (now %v)", s, firstCheck)
	}

	h.next()
	h.next() // third failure: b unhealthy
	if s := h.status("b:1"); s.State != StateUnhealthy || !s.Since.Equal(h.clock.Now()) {
		t.Fatalf("b after fall failures: %+v", s)
	}

	h.checker.setDown("a:1", true)
	h.next()
	h.next()
	h.wantHealthy("a:1", "c:1") // two failures < fall
	h.next()
	h.wantHealthy("c:1")

	h.checker.setDown("a:1", false)
	h.checker.setDown("b:1", false)
	h.next()
	h.wantHealthy("c:1") // one success < rise
	h.next()
	h.wantHealthy("a:1", "b:1", "c:1") // order is the backend order, not the order of recovery

	// Exactly one log line per change: b unknown->unhealthy, a healthy->unhealthy,
	// then a and b back to healthy, plus the first a and c.
	var got []string
	for _, r := range h.logs.Records("backend health changed") {
		got = append(got, attr(r, "backend")+" "+attr(r, "from")+"->"+attr(r, "to"))
	}
	slices.Sort(got)
	want := []string{
		"a:1 healthy->unhealthy", "a:1 unhealthy->healthy", "a:1 unknown->healthy",
		"b:1 unhealthy->healthy", "b:1 unknown->unhealthy", "c:1 unknown->healthy",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("state change logs:\n got %q\nwant %q", got, want)
	}
	for _, r := range h.logs.Records("backend health changed") {
		if attr(r, "to") == "unhealthy" && (r.Level != slog.LevelWarn || !strings.Contains(attr(r, "error"), errDown.Error())) {
			t.Errorf("unhealthy change logged at %v with error %q", r.Level, attr(r, "error"))
		}
	}
}

func TestMonitorScheduleAndFirstDelay(t *testing.T) {
	tests := []struct {
		name      string
		interval  time.Duration
		pick      time.Duration // what FirstDelay returns
		wantLimit time.Duration
		wantFirst time.Duration
	}{
		{"long interval caps limit at 1s", 10 * time.Second, 300 * time.Millisecond, time.Second, 300 * time.Millisecond},
		{"short interval is the limit", 200 * time.Millisecond, 150 * time.Millisecond, 200 * time.Millisecond, 150 * time.Millisecond},
		{"negative clamped to 0", time.Second, -time.Second, time.Second, 0},
		{"too large clamped below limit", time.Second, 5 * time.Second, time.Second, time.Second - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limits := make(chan time.Duration, 1)
			pick := func(limit time.Duration) time.Duration { limits <- limit; return tt.pick }
			h := startMonitor(t, Config{Interval: tt.interval, FirstDelay: pick}, "a:1")
			if got := <-limits; got != tt.wantLimit {
				t.Fatalf("FirstDelay limit = %v, want %v", got, tt.wantLimit)
			}
			if tt.wantFirst == 0 {
				// Fired at once: the first check runs without advancing time.
				waitFor(t, 2*time.Second, func() bool { return h.checker.Calls("a:1") == 1 })
			} else {
				h.step(tt.wantFirst - 1)
				if n := h.checker.Calls("a:1"); n != 0 {
					t.Fatalf("checked %d times before the first delay", n)
				}
				h.step(1)
			}
			if n := h.checker.Calls("a:1"); n != 1 {
				t.Fatalf("checks after first delay = %d, want 1", n)
			}
			h.step(tt.interval - 1)
			if n := h.checker.Calls("a:1"); n != 1 {
				t.Fatalf("checks before one interval = %d, want 1", n)
			}
			h.step(1)
			if n := h.checker.Calls("a:1"); n != 2 {
				t.Fatalf("checks after one interval = %d, want 2", n)
			}
			asked := h.clock.Asked()
			if want := []time.Duration{tt.wantFirst, tt.interval, tt.interval}; !slices.Equal(asked, want) {
				t.Fatalf("waits asked of the clock = %v, want %v", asked, want)
			}
		})
	}
}

func TestMonitorDefaultFirstDelayIsRandomAndBounded(t *testing.T) {
	const n = 32
	backends := make([]string, n)
	for i := range backends {
		backends[i] = "10.0.0." + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ":1"
	}
	clock := newFakeClock()
	m, err := NewMonitor(Config{Interval: 5 * time.Second, Timeout: time.Second, Rise: 1, Fall: 1,
		Checker: newFakeChecker(), Clock: clock}, BackendList(backends...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	waitFor(t, 2*time.Second, func() bool { return len(clock.Asked()) == n })
	cancel()
	<-done
	delays := clock.Asked()
	distinct := map[time.Duration]bool{}
	for _, d := range delays {
		if d < 0 || d >= time.Second {
			t.Fatalf("first delay %v outside [0, 1s)", d)
		}
		distinct[d] = true
	}
	if len(distinct) < n/2 {
		t.Fatalf("first delays are not spread: %v", delays)
	}
}

func TestMonitorPassiveFailure(t *testing.T) {
	h := startMonitor(t, Config{Rise: 2, Fall: 2}, "a:1", "b:1")
	h.first()
	h.wantHealthy("a:1", "b:1")

	h.m.ReportDialFailure("nope:1", errDown) // unknown address: ignored
	h.m.ReportDialFailure("a:1", errors.New("connection refused"))
	h.wantHealthy("a:1", "b:1")
	s := h.status("a:1")
	if s.State != StateHealthy || !strings.Contains(s.LastError, "connection refused") {
		t.Fatalf("after one dial failure: %+v", s)
	}
	h.m.ReportDialFailure("a:1", nil) // nil error still counts
	h.wantHealthy("b:1")
	s = h.status("a:1")
	if s.State != StateUnhealthy || s.LastError == "" {
		t.Fatalf("after fall dial failures: %+v", s)
	}
	if h.checker.Calls("a:1") != 1 {
		t.Fatalf("passive failures ran active checks")
	}

	// Active checks bring it back after rise successes.
	h.next()
	h.next()
	h.wantHealthy("a:1", "b:1")
	if s := h.status("a:1"); s.LastError != "" {
		t.Fatalf("LastError after passing check = %q", s.LastError)
	}
}

func TestMonitorSubscribe(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1}, "a:1", "b:1")
	ch1, cancel1 := h.m.Subscribe()
	ch2, cancel2 := h.m.Subscribe()
	defer cancel2()

	pending := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}

	h.first() // two changes (a and b healthy) coalesce into one pending signal
	if !pending(ch1) || !pending(ch2) {
		t.Fatal("subscribers not signalled on state change")
	}
	if pending(ch1) {
		t.Fatal("more than one signal pending")
	}
	h.next() // no change
	if pending(ch1) || pending(ch2) {
		t.Fatal("signalled without a state change")
	}
	h.m.ReportDialFailure("a:1", errDown)
	if !pending(ch1) || !pending(ch2) {
		t.Fatal("subscribers not signalled on passive state change")
	}

	cancel1()
	cancel1() // idempotent
	h.next()  // a back to healthy
	if pending(ch1) {
		t.Fatal("cancelled subscriber signalled")
	}
	if !pending(ch2) {
		t.Fatal("remaining subscriber not signalled")
	}
}

func TestMonitorCheckTimeout(t *testing.T) {
	h := startMonitor(t, Config{Timeout: 20 * time.Millisecond, Rise: 1, Fall: 1}, "a:1")
	h.checker.setBlock("a:1", true)
	start := time.Now()
	h.first()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("blocked check took %v, timeout is 20ms", d)
	}
	s := h.status("a:1")
	if s.State != StateUnhealthy || !strings.Contains(s.LastError, "timed out after 20ms") {
		t.Fatalf("after a check that timed out: %+v", s)
	}
}

func TestMonitorShutdownDuringCheckIsNotAFailure(t *testing.T) {
	clock, checker := newFakeClock(), newFakeChecker()
	checker.setBlock("a:1", true)
	m, err := NewMonitor(Config{Interval: time.Second, Timeout: time.Hour, Rise: 1, Fall: 1,
		Checker: checker, Clock: clock, FirstDelay: func(time.Duration) time.Duration { return 0 }}, BackendList("a:1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	waitFor(t, 2*time.Second, func() bool { return checker.Calls("a:1") == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return while a check was in flight")
	}
	if s := m.Backends()[0]; s.State != StateUnknown || s.LastError != "" || !s.LastCheck.IsZero() {
		t.Fatalf("cancelled check was recorded: %+v", s)
	}
}

func TestMonitorHealthyDoesNotAllocate(t *testing.T) {
	h := startMonitor(t, Config{}, "a:1", "b:1", "c:1")
	h.first()
	var got []string
	if allocs := testing.AllocsPerRun(1000, func() { got = h.m.Healthy() }); allocs != 0 {
		t.Fatalf("Healthy allocates %v times per call", allocs)
	}
	if len(got) != 3 {
		t.Fatalf("Healthy() = %q", got)
	}
	// A caller appending to the snapshot must not corrupt it.
	_ = append(got, "x:1")
	h.wantHealthy("a:1", "b:1", "c:1")
	if cap(got) != len(got) {
		t.Fatalf("snapshot has spare capacity %d > %d", cap(got), len(got))
	}
}

func TestNewMonitorValidation(t *testing.T) {
	ok := Config{Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1, Checker: NewTCPChecker()}
	tests := []struct {
		name     string
		mutate   func(*Config)
		backends []string
		want     string
	}{
		{"zero interval", func(c *Config) { c.Interval = 0 }, nil, "Interval: must be greater than 0, got 0s: e.g. 2s"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, nil, "Timeout: must be greater than 0, got -1s: e.g. 1s"},
		{"rise 0", func(c *Config) { c.Rise = 0 }, nil, "Rise: must be at least 1, got 0"},
		{"fall -2", func(c *Config) { c.Fall = -2 }, nil, "Fall: must be at least 1, got -2"},
		{"no checker", func(c *Config) { c.Checker = nil }, nil, "Checker: no health checker configured"},
		{"no backends", func(*Config) {}, []string{}, "Backends: at least one backend is required: give host:port (repeatable, or comma-separated)"},
		{"empty backend", func(*Config) {}, []string{"a:1", ""}, "Backends: empty address: want host:port, e.g. 10.0.0.21:6443"},
		{"no port", func(*Config) {}, []string{"a"}, `Backends: "a" is not host:port: use e.g. 10.0.0.21:6443`},
		{"no host", func(*Config) {}, []string{":6443"}, `Backends: ":6443" has no host: use e.g. 10.0.0.21:6443`},
		{"port 0", func(*Config) {}, []string{"a:0"}, `Backends: port "0" in "a:0" is out of range 1-65535`},
		{"duplicate", func(*Config) {}, []string{"a:1", "b:1", "a:1"}, "Backends: a:1 is listed twice: list each backend once"},
		{"min-healthy above backends", func(c *Config) { c.MinHealthy = 3 }, []string{"a:1", "b:1"}, "MinHealthy: must be between 0 and the number of backends (2), got 3"},
		{"min-healthy negative", func(c *Config) { c.MinHealthy = -1 }, nil, "MinHealthy: must be between 0 and the number of backends (1), got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			backends := tt.backends
			if backends == nil {
				backends = []string{"a:1"}
			}
			m, err := NewMonitor(cfg, BackendList(backends...))
			if err == nil || m != nil {
				t.Fatalf("NewMonitor = %v, %v; want error", m, err)
			}
			if err.Error() != tt.want {
				t.Errorf("error %q, want %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewMonitor(ok, BackendList("a:1", "b:1")); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

func TestMonitorMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := startMonitor(t, Config{Rise: 1, Fall: 2, Metrics: NewMetrics(reg)}, "a:1", "b:1")
	if got := gaugeValue(t, reg, "vipd_backend_health_state", "a:1"); got != -1 {
		t.Fatalf("state of unchecked backend = %v, want -1", got)
	}
	h.checker.setDown("b:1", true)
	h.first()
	h.next()
	h.next() // a: 3 passes; b: 3 failures, unhealthy after 2
	checks := map[string]float64{}
	want := map[string]float64{
		`vipd_backend_health_state{backend="a:1"}`:                            1,
		`vipd_backend_health_state{backend="b:1"}`:                            0,
		`vipd_backend_health_transitions_total{backend="a:1",to="healthy"}`:   1,
		`vipd_backend_health_transitions_total{backend="b:1",to="unhealthy"}`: 1,
		`vipd_backend_check_failures_total{backend="b:1"}`:                    3,
		`vipd_backend_check_duration_seconds_count{backend="a:1"}`:            3,
		`vipd_backend_check_duration_seconds_count{backend="b:1"}`:            3,
	}
	for _, mf := range gather(t, reg) {
		for k, v := range mf {
			checks[k] = v
		}
	}
	for k, v := range want {
		if checks[k] != v {
			t.Errorf("%s = %v, want %v", k, checks[k], v)
		}
	}
	if _, ok := checks[`vipd_backend_check_failures_total{backend="a:1"}`]; ok {
		t.Errorf("failures counted for a backend that never failed")
	}

	// Passive failures change state (and the gauge) but are not checks.
	h.m.ReportDialFailure("a:1", errDown)
	h.m.ReportDialFailure("a:1", errDown)
	if got := gaugeValue(t, reg, "vipd_backend_health_state", "a:1"); got != 0 {
		t.Fatalf("state after passive fall = %v, want 0", got)
	}

	// A nil *Metrics is a valid no-op.
	var nilMetrics *Metrics
	nilMetrics.setState("x", StateHealthy)
	nilMetrics.transition("x", StateHealthy)
	nilMetrics.check("x", time.Second, errDown)
}
