package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vipd/vipd/internal/notify"
)

// ErrAlreadyRunning is returned by a second concurrent call of Manager.Run.
var ErrAlreadyRunning = errors.New("vip manager already running")

// Manager holds the VIP while, and only while, this node is the healthy Raft leader. See the package
// documentation for the policy. Create it with NewManager and run it with Run.
type Manager struct {
	cfg     Config
	lead    Leadership
	health  HealthSource
	kernel  Kernel
	log     *slog.Logger
	held    atomic.Bool
	changed notify.Signal // Held changed
	running atomic.Bool
	hooks   atomic.Pointer[hookSet] // cfg's hooks until SetHooks replaces them
	// draining is the epoch of this node's drain under way (0: none); handovers carries Handover to Run.
	draining  atomic.Uint64
	handovers chan chan (<-chan struct{})
	// ports are the frontends' ports on the VIP (cfg.Ports, then AddPorts'); portsAdded tells Run's loop.
	ports      atomic.Pointer[[]uint16]
	portsAdded chan struct{}
}

// NewManager validates cfg, applies defaults and returns a Manager; it starts nothing. h and k may be
// nil only for a witness (which never holds the VIP). Every error wraps ErrInvalidConfig; one about a
// Config field is a *fielderr.Error that names it.
func NewManager(cfg Config, l Leadership, h HealthSource, k Kernel) (*Manager, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if l == nil {
		return nil, fmt.Errorf("%w: Leadership is nil", ErrInvalidConfig)
	}
	if !cfg.Witness && (h == nil || k == nil) {
		return nil, fmt.Errorf("%w: a non-witness node needs a HealthSource and a Kernel", ErrInvalidConfig)
	}
	m := &Manager{cfg: cfg, lead: l, health: h, kernel: k, log: cfg.Logger, handovers: make(chan chan (<-chan struct{})),
		portsAdded: make(chan struct{}, 1)}
	m.hooks.Store(&hookSet{acquire: cfg.OnAcquire, release: cfg.OnRelease, timeout: cfg.HookTimeout})
	ports := slices.Clone(cfg.Ports)
	m.ports.Store(&ports)
	return m, nil
}

// AddPorts adds frontends' ports on the VIP to those whose flows a hand-over drain keeps and a stopping
// node resets (Config.Ports), while the Manager runs: a reload added a frontend. Ports are only ever added
// until a restart, since a frontend a reload removed may still have connections draining, and a drain
// keeps those too. A running Manager installs the new flow rules at once (and the forwarding rules, while
// it forwards a predecessor's flows); a failure to is logged, and planned moves then reset the new
// ports' connections as they did without drains. Safe for concurrent use.
func (m *Manager) AddPorts(ports ...uint16) error {
	for _, p := range ports {
		if p == 0 {
			return invalid("Ports", "holds 0: a frontend's port on the VIP must be known (not chosen by the kernel at bind time)")
		}
	}
	for {
		old := m.ports.Load()
		next := slices.Clone(*old)
		for _, p := range ports {
			if !slices.Contains(next, p) {
				next = append(next, p)
			}
		}
		if len(next) == len(*old) {
			return nil
		}
		if m.ports.CompareAndSwap(old, &next) {
			break
		}
	}
	select {
	case m.portsAdded <- struct{}{}:
	default: // a signal is pending already: the loop reads the latest ports
	}
	return nil
}

// Ports returns the frontends' ports on the VIP: Config.Ports and those AddPorts added.
func (m *Manager) Ports() []uint16 { return slices.Clone(*m.ports.Load()) }

// SetHooks replaces the acquire and release hooks and their timeout (0 = DefaultHookTimeout) for the events
// that come next, while the Manager runs (a reload). It validates them as NewManager does and changes
// nothing on error.
func (m *Manager) SetHooks(acquire, release Hook, timeout time.Duration) error {
	if timeout == 0 {
		timeout = DefaultHookTimeout
	}
	if timeout < 0 {
		return invalid("HookTimeout", "is %v: must be positive (zero takes the default)", timeout)
	}
	if err := acquire.validate("OnAcquire"); err != nil {
		return err
	}
	if err := release.validate("OnRelease"); err != nil {
		return err
	}
	m.hooks.Store(&hookSet{acquire: acquire, release: release, timeout: timeout})
	return nil
}

// Held reports whether this node currently holds the VIP (for status output and gossip metadata).
func (m *Manager) Held() bool { return m.held.Load() }

// Subscribe returns a capacity-1 channel that receives a value whenever Held may have changed (several
// changes may coalesce into one signal: re-read Held), and a function that ends the subscription. The
// channel is never closed. Safe for concurrent use, before, during and after Run.
func (m *Manager) Subscribe() (<-chan struct{}, func()) { return m.changed.Subscribe() }

// Draining returns the epoch of this node's hand-over drain under way, 0 when it is not draining, and
// DrainPending while the drain is being recorded. Subscribe signals its changes too. The agent gossips it, so
// the successor knows when to stop forwarding.
func (m *Manager) Draining() uint64 { return m.draining.Load() }

// DrainPending is what Draining returns while a hand-over drain is being recorded in the Raft log: its epoch
// is not known yet, but the record may already be applied, and so be this node's latest drain, which a node
// that is not draining gossips as done. Reporting "not draining" in that window told the successor the drain
// was over before it began, and it stopped forwarding at its first check: every drained connection was reset.
const DrainPending = ^uint64(0)

func (m *Manager) setDraining(epoch uint64) {
	if m.draining.Swap(epoch) != epoch {
		m.changed.Notify()
	}
}

// Handover prepares this node's planned departure (vipd leave, SIGTERM): it releases the VIP and never
// takes it again. With HandoverDrain, if it held the VIP and leads, it first records a drain and keeps
// serving its connections; the returned channel is closed when that drain ends (at once when there is none).
// The caller then hands leadership on, waits for the channel (bounded by DrainTimeout inside the Manager),
// and stops Run. Without a running Run it returns a closed channel.
func (m *Manager) Handover(ctx context.Context) (<-chan struct{}, error) {
	if !m.running.Load() {
		return closedChan, nil
	}
	reply := make(chan (<-chan struct{}), 1)
	select {
	case m.handovers <- reply:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case done := <-reply:
		return done, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// setHeld records the holding state for Held and wakes the subscribers.
func (m *Manager) setHeld(v bool) {
	if m.held.Swap(v) != v {
		m.changed.Notify()
	}
}

// Run removes stale VIPs, then follows leadership until ctx is done. It releases the VIP before
// returning and returns only after every goroutine it started (answerer, leader verification, hooks)
// has ended; queued hooks run to completion, each bounded by HookTimeout.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrAlreadyRunning
	}
	defer m.running.Store(false)

	hooks := newHookRunner(func() time.Duration { return m.hooks.Load().timeout }, joinPrefixes(m.cfg.VIPs), m.log, m.cfg.Metrics)
	var hookWG sync.WaitGroup
	hookWG.Go(hooks.run)
	defer func() {
		close(hooks.queue)
		hookWG.Wait()
	}()

	leaderCh, stopWatch := m.lead.WatchLeadership()
	defer stopWatch()
	var healthCh <-chan struct{}
	if m.health != nil {
		ch, stop := m.health.Subscribe()
		defer stop()
		healthCh = ch
	}

	lctx, cancel := context.WithCancel(ctx)
	l := &loop{m: m, cfg: &m.cfg, log: m.log, hooks: hooks, leaderCh: leaderCh, ctx: lctx,
		verifyRes: make(chan verifyResult, 1), fence: newFence(m.cfg.AnswerWindow), handovers: m.handovers}
	defer func() {
		l.release("shutdown") // first: nothing may run while we still answer for the VIP
		l.stopForwarding()
		cancel()
		l.bg.Wait()
	}()
	l.cleanup()
	l.mark()
	return l.run(healthCh)
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, " ")
}
