package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// maxFirstDelay caps the random delay before a backend's first check, so a
// long Interval does not leave a freshly started proxy with no healthy
// backend for long.
const maxFirstDelay = time.Second

// BackendStatus is a point-in-time view of one backend, for the admin API.
type BackendStatus struct {
	Addr  string `json:"addr"`
	State State  `json:"state"`
	// LastCheck is when the last active check finished; zero before the
	// first one.
	LastCheck time.Time `json:"last_check"`
	// LastError is the error of the last observation (active check or
	// passive dial failure); "" when the last observation passed.
	LastError string `json:"last_error,omitempty"`
	// Latency is how long the last active check took.
	Latency time.Duration `json:"latency"`
	// Since is when State was entered; zero while still StateUnknown.
	Since time.Time `json:"since"`
}

// backend is the mutable state of one backend, guarded by Monitor.mu.
type backend struct {
	addr      string
	tracker   *Tracker
	lastCheck time.Time
	lastErr   string
	latency   time.Duration
	since     time.Time
}

// Monitor actively checks a fixed set of backends and publishes which of
// them are healthy. It satisfies proxy.Backends. All methods are safe for
// concurrent use.
type Monitor struct {
	cfg        Config
	log        *slog.Logger
	clock      Clock
	firstDelay func(limit time.Duration) time.Duration

	backends []*backend          // in the order given to NewMonitor; fixed
	byAddr   map[string]*backend // read-only after NewMonitor

	// healthy is the current healthy set, in backend order. The slice it
	// points to is never modified after being stored: state changes store a
	// new one, so readers need neither lock nor copy.
	healthy atomic.Pointer[[]string]

	mu      sync.Mutex // guards every backend's fields, subs, nextSub, hooks
	subs    map[uint64]chan struct{}
	nextSub uint64
	hooks   []func() // internal change listeners (Node), called without mu
}

// NewMonitor validates cfg and the backend list (non-empty, no duplicates)
// and returns a Monitor with every backend StateUnknown. Validation errors
// wrap ErrInvalidConfig and name the flag to fix. It starts nothing; call
// Run.
func NewMonitor(cfg Config, backends []string) (*Monitor, error) {
	if err := validate(cfg, backends); err != nil {
		return nil, err
	}
	m := &Monitor{
		cfg:        cfg,
		log:        cfg.Logger,
		clock:      cfg.Clock,
		firstDelay: cfg.FirstDelay,
		byAddr:     make(map[string]*backend, len(backends)),
		subs:       make(map[uint64]chan struct{}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.clock == nil {
		m.clock = realClock{}
	}
	if m.firstDelay == nil {
		m.firstDelay = func(limit time.Duration) time.Duration { return rand.N(limit) }
	}
	for _, addr := range backends {
		b := &backend{addr: addr, tracker: NewTracker(cfg.Rise, cfg.Fall)}
		m.backends = append(m.backends, b)
		m.byAddr[addr] = b
		cfg.Metrics.setState(addr, StateUnknown)
	}
	m.healthy.Store(&[]string{})
	return m, nil
}

// Run checks every backend from its own goroutine until ctx is done: first
// after a random delay in [0, min(Interval, 1s)), so backends are not probed
// in lock-step, then Interval after each check ends. It returns when all its
// goroutines have ended. Call it once.
func (m *Monitor) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range m.backends {
		wg.Go(func() { m.probeLoop(ctx, b) })
	}
	wg.Wait()
}

// probeLoop is the schedule of one backend.
func (m *Monitor) probeLoop(ctx context.Context, b *backend) {
	limit := min(m.cfg.Interval, maxFirstDelay)
	delay := min(max(m.firstDelay(limit), 0), limit-1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(delay):
		}
		m.probe(ctx, b)
		delay = m.cfg.Interval
	}
}

// probe runs one active check of b, bounded by Timeout, and records it.
func (m *Monitor) probe(ctx context.Context, b *backend) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	start := m.clock.Now()
	err := m.cfg.Checker.Check(cctx, b.addr)
	end := m.clock.Now()
	cancel()
	if ctx.Err() != nil {
		return // shutting down: the failure is ours, not the backend's
	}
	if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("check timed out after %s: %w", m.cfg.Timeout, err)
	}
	latency := end.Sub(start)
	m.cfg.Metrics.check(b.addr, latency, err)
	m.observe(b, err, end, latency, true)
}

// ReportDialFailure records that the proxy failed to connect to addr. It
// counts as one failed check (a passive check), so a backend that dies is
// taken out after Fall failed dials even between active checks. Unknown
// addresses are ignored.
func (m *Monitor) ReportDialFailure(addr string, err error) {
	b, ok := m.byAddr[addr]
	if !ok {
		return
	}
	if err == nil {
		err = errors.New("dial failed")
	}
	m.observe(b, fmt.Errorf("passive: %w", err), m.clock.Now(), 0, false)
}

// observe feeds one result into b's tracker and, on a state change,
// republishes the healthy set, logs, counts and notifies.
func (m *Monitor) observe(b *backend, err error, now time.Time, latency time.Duration, active bool) {
	m.mu.Lock()
	if active {
		b.lastCheck, b.latency = now, latency
	}
	b.lastErr = ""
	if err != nil {
		b.lastErr = err.Error()
	}
	from := b.tracker.State()
	to, changed := b.tracker.Observe(err == nil)
	if !changed {
		m.mu.Unlock()
		return
	}
	b.since = now
	m.publishLocked()
	// Logged and counted under mu so that logs and the state gauge follow
	// the order of the changes.
	attrs := []any{"backend", b.addr, "from", from.String(), "to", to.String()}
	if to == StateHealthy {
		m.log.Info("backend health changed", attrs...)
	} else {
		m.log.Warn("backend health changed", append(attrs, "error", b.lastErr)...)
	}
	m.cfg.Metrics.transition(b.addr, to)
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default: // a signal is already pending; the subscriber will re-read
		}
	}
	hooks := m.hooks
	m.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// publishLocked stores a new healthy snapshot. m.mu must be held.
func (m *Monitor) publishLocked() {
	healthy := make([]string, 0, len(m.backends))
	for _, b := range m.backends {
		if b.tracker.State() == StateHealthy {
			healthy = append(healthy, b.addr)
		}
	}
	healthy = healthy[:len(healthy):len(healthy)] // an append by a caller must copy
	m.healthy.Store(&healthy)
}

// Healthy returns the healthy backends in the order given to NewMonitor.
// It neither locks nor allocates, because the proxy calls it on every
// connection. The returned slice is shared: callers must not modify it.
func (m *Monitor) Healthy() []string { return *m.healthy.Load() }

// Backends returns the status of every backend, in the order given to
// NewMonitor.
func (m *Monitor) Backends() []BackendStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]BackendStatus, len(m.backends))
	for i, b := range m.backends {
		out[i] = BackendStatus{
			Addr:      b.addr,
			State:     b.tracker.State(),
			LastCheck: b.lastCheck,
			LastError: b.lastErr,
			Latency:   b.latency,
			Since:     b.since,
		}
	}
	return out
}

// Subscribe returns a channel that receives a value after any backend
// changes state, and a func that ends the subscription. The channel has
// capacity 1 and sends never block, so several changes may coalesce into one
// signal: subscribers re-read Healthy or Backends. The channel is never
// closed.
func (m *Monitor) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	id := m.nextSub
	m.nextSub++
	m.subs[id] = ch
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			delete(m.subs, id)
			m.mu.Unlock()
		})
	}
}

// onChange registers f to be called, without m.mu held, after every state
// change. It is how Node follows the Monitor without a goroutine of its own.
func (m *Monitor) onChange(f func()) {
	m.mu.Lock()
	m.hooks = append(m.hooks, f)
	m.mu.Unlock()
}

// total is the number of backends, fixed at NewMonitor.
func (m *Monitor) total() int { return len(m.backends) }
