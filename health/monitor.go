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

	"github.com/vipd/vipd/internal/localerr"
	"github.com/vipd/vipd/internal/notify"
)

// maxFirstDelay caps the random delay before a backend's first check, so a
// long Interval does not leave a freshly started proxy with no healthy
// backend for long.
const maxFirstDelay = time.Second

// ErrUnknownBackend is returned by SetDrain for an address that is not one of the Monitor's backends.
var ErrUnknownBackend = errors.New("unknown backend")

// BackendStatus is a point-in-time view of one backend, for the admin API.
type BackendStatus struct {
	Addr  string `json:"addr"`
	State State  `json:"state"`
	// Weight is the backend's effective weight (1..MaxWeight).
	Weight int `json:"weight"`
	// Drained is true while an operator has taken the backend out of service (SetDrain): it is still
	// checked but gets no new connections.
	Drained bool `json:"drained"`
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
	weight    int
	drained   bool
	tracker   *Tracker
	lastCheck time.Time
	lastErr   string
	latency   time.Duration
	since     time.Time

	removed bool               // taken out by Update: results still in flight are dropped
	stop    context.CancelFunc // ends its probe loop; nil while none runs
	wake    chan struct{}      // capacity 1: Interval changed, the loop recomputes its wait
}

// view is what lock-free readers see: a snapshot published after every change and never modified after.
type view struct {
	// seq is the weighted round-robin sequence of the serving backends (healthy and not drained): what
	// Healthy returns. Its capacity equals its length, so a caller's append copies.
	seq []string
	// serving counts the distinct backends in seq; drained the drained backends (in any state); total every
	// backend.
	serving, drained, total int
	// minHealthy is Config.MinHealthy, 0 taken as 1.
	minHealthy int
}

// runner is the state of an active Run: the context of every probe loop and the WaitGroup Run waits on.
type runner struct {
	ctx context.Context
	wg  sync.WaitGroup
}

// Monitor actively checks a set of backends and publishes which of them may receive new connections. The set
// and the check settings can change at run time (Update), a backend can be drained for maintenance
// (SetDrain). It satisfies proxy.Backends. All methods are safe for concurrent use.
type Monitor struct {
	log        *slog.Logger
	clock      Clock
	firstDelay func(limit time.Duration) time.Duration
	metrics    *Metrics
	localLog   localerr.RateLog

	view  atomic.Pointer[view]
	loops atomic.Int32 // probe goroutines running, for tests

	mu       sync.Mutex // guards the fields below and every backend's fields
	cfg      Config
	backends []*backend // in the order of the last NewMonitor or Update
	byAddr   map[string]*backend
	run      *runner // non-nil while Run is active
	hooks    map[uint64]func()
	nextHook uint64

	changed notify.Signal
}

// NewMonitor validates cfg and the backend list (non-empty, no duplicates,
// weights in range) and returns a Monitor with every backend StateUnknown.
// Validation errors wrap ErrInvalidConfig and name the field to fix. It
// starts nothing; call Run.
func NewMonitor(cfg Config, backends []Backend) (*Monitor, error) {
	if err := validate(cfg, backends); err != nil {
		return nil, err
	}
	m := &Monitor{
		log:        cfg.Logger,
		clock:      cfg.Clock,
		firstDelay: cfg.FirstDelay,
		metrics:    cfg.Metrics,
		cfg:        cfg,
		byAddr:     make(map[string]*backend, len(backends)),
		hooks:      make(map[uint64]func()),
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
	m.localLog = localerr.RateLog{Interval: localerr.LogInterval, Now: m.clock.Now}
	for _, nb := range backends {
		b := m.newBackend(nb)
		m.backends = append(m.backends, b)
		m.byAddr[b.addr] = b
	}
	m.publishLocked()
	return m, nil
}

func (m *Monitor) newBackend(nb Backend) *backend {
	m.metrics.setState(nb.Addr, StateUnknown)
	m.metrics.setDrained(nb.Addr, false)
	return &backend{addr: nb.Addr, weight: nb.weight(), tracker: NewTracker(m.cfg.Rise, m.cfg.Fall), wake: make(chan struct{}, 1)}
}

// Run checks every backend from its own goroutine until ctx is done: first
// after a random delay in [0, min(Interval, 1s)), so backends are not probed
// in lock-step, then Interval after each check ends. Backends that Update
// adds while Run is active get their own goroutine at once; removed ones
// lose theirs. Run owns all of them and returns when every one has ended.
// Call it once.
func (m *Monitor) Run(ctx context.Context) {
	r := &runner{ctx: ctx}
	m.mu.Lock()
	m.run = r
	for _, b := range m.backends {
		m.startLocked(b)
	}
	m.mu.Unlock()

	<-ctx.Done()
	m.mu.Lock()
	m.run = nil // from here on Update starts no goroutine, so wg.Wait cannot race a wg.Add
	for _, b := range m.backends {
		b.stop = nil
	}
	m.mu.Unlock()
	r.wg.Wait()
}

// startLocked starts b's probe loop under the active Run. m.mu must be held and m.run set.
func (m *Monitor) startLocked(b *backend) {
	ctx, cancel := context.WithCancel(m.run.ctx)
	b.stop = cancel
	m.loops.Add(1)
	m.run.wg.Go(func() {
		defer m.loops.Add(-1)
		defer cancel()
		m.probeLoop(ctx, b)
	})
}

// probeLoop is the schedule of one backend. A change of Interval (Update) wakes it, so the next check is due
// Interval after the last one ended by the new Interval, not by the one in force when it started waiting.
func (m *Monitor) probeLoop(ctx context.Context, b *backend) {
	limit := min(m.interval(), maxFirstDelay)
	delay := min(max(m.firstDelay(limit), 0), limit-1)
	first := true
	waitFrom := m.clock.Now()
	for {
		remaining := delay - m.clock.Now().Sub(waitFrom)
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
			if !first {
				delay = m.interval()
			}
			continue
		case <-m.clock.After(remaining):
		}
		if ctx.Err() != nil {
			return // the timer and the stop were both ready: do not start a check for a removed backend
		}
		m.probe(ctx, b)
		first = false
		delay = m.interval()
		waitFrom = m.clock.Now()
	}
}

func (m *Monitor) interval() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Interval
}

// probe runs one active check of b, bounded by Timeout, and records it. The Checker and Timeout are those in
// force when the check starts.
func (m *Monitor) probe(ctx context.Context, b *backend) {
	m.mu.Lock()
	checker, timeout := m.cfg.Checker, m.cfg.Timeout
	m.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	start := m.clock.Now()
	err := checker.Check(cctx, b.addr)
	end := m.clock.Now()
	cancel()
	if ctx.Err() != nil {
		return // shutting down or removed: the failure is ours, not the backend's
	}
	if errno, ok := localerr.Errno(err); ok {
		// Our own shortage (fds, buffers, ports): the check proves nothing about the backend.
		m.metrics.localError(errno)
		m.localLog.Log(m.log, slog.LevelWarn, "health check failed for a local reason; not counted against the backend",
			"backend", b.addr, "errno", errno, "err", err)
		return
	}
	if err != nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("check timed out after %s: %w", timeout, err)
	}
	latency := end.Sub(start)
	m.metrics.check(b.addr, latency, err)
	m.observe(b, err, end, latency, true)
}

// ReportDialFailure records that the proxy failed to connect to addr. It
// counts as one failed check (a passive check), so a backend that dies is
// taken out after Fall failed dials even between active checks. Unknown
// addresses (a backend removed by Update since) are ignored.
func (m *Monitor) ReportDialFailure(addr string, err error) {
	m.mu.Lock()
	b, ok := m.byAddr[addr]
	m.mu.Unlock()
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
	if b.removed {
		m.mu.Unlock()
		return
	}
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
	m.metrics.transition(b.addr, to)
	m.unlockAndNotify()
}

// unlockAndNotify releases m.mu, then tells subscribers and hooks that something changed. Hooks run without
// the lock, so they may call back into the Monitor.
func (m *Monitor) unlockAndNotify() {
	hooks := make([]func(), 0, len(m.hooks))
	for _, h := range m.hooks {
		hooks = append(hooks, h)
	}
	m.mu.Unlock()
	m.changed.Notify()
	for _, h := range hooks {
		h()
	}
}

// publishLocked stores a new view. m.mu must be held.
func (m *Monitor) publishLocked() {
	v := &view{total: len(m.backends), minHealthy: max(m.cfg.MinHealthy, 1)}
	var serving []*backend
	var weights []int
	for _, b := range m.backends {
		if b.drained {
			v.drained++
		}
		if b.tracker.State() == StateHealthy && !b.drained {
			serving = append(serving, b)
			weights = append(weights, b.weight)
		}
	}
	v.serving = len(serving)
	seq := weightedSequence(weights)
	v.seq = make([]string, len(seq))
	for i, j := range seq {
		v.seq[i] = serving[j].addr
	}
	m.view.Store(v)
}

// Healthy returns the backends that may receive new connections (healthy and not drained) as a weighted
// round-robin sequence: each appears in proportion to its weight, spread out (smooth weighted round robin,
// as nginx does it: weights 3:1 give a,a,b,a), in backend order where weights are equal. A proxy that walks
// it with a cursor, one connection per step, gives each backend its weighted share. A least-conn balancer
// sees a backend of weight w w times; since the entries of one backend have the same load, weight then only
// breaks ties among the least loaded, in proportion.
//
// It neither locks nor allocates, because the proxy calls it on every connection. The returned slice is
// shared: callers must not modify it.
func (m *Monitor) Healthy() []string { return m.view.Load().seq }

// Backends returns the status of every backend, in the order given to
// NewMonitor (or the last Update).
func (m *Monitor) Backends() []BackendStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]BackendStatus, len(m.backends))
	for i, b := range m.backends {
		out[i] = BackendStatus{
			Addr:      b.addr,
			State:     b.tracker.State(),
			Weight:    b.weight,
			Drained:   b.drained,
			LastCheck: b.lastCheck,
			LastError: b.lastErr,
			Latency:   b.latency,
			Since:     b.since,
		}
	}
	return out
}

// Subscribe returns a channel that receives a value after any backend
// changes state, after Update and after SetDrain changed something, and a
// func that ends the subscription. The channel has capacity 1 and sends
// never block, so several changes may coalesce into one signal: subscribers
// re-read Healthy or Backends. The channel is never closed.
func (m *Monitor) Subscribe() (<-chan struct{}, func()) { return m.changed.Subscribe() }

// onChange registers f to be called, without m.mu held, after every change
// Subscribe would signal, and returns a func that unregisters it. It is how
// Node follows Monitors without a goroutine of its own.
func (m *Monitor) onChange(f func()) func() {
	m.mu.Lock()
	id := m.nextHook
	m.nextHook++
	m.hooks[id] = f
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.hooks, id)
		m.mu.Unlock()
	}
}

// summary returns the counts Node needs, from the latest view: no lock.
func (m *Monitor) summary() view { return *m.view.Load() }
