package vip

import (
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// Defaults applied by NewManager to zero Config fields. VerifyInterval and AnswerWindow have no fixed default:
// they derive from RaftHeartbeat (see Config).
const (
	DefaultGARPRefresh   = 3 * time.Second
	DefaultBurstCount    = 5
	DefaultBurstInterval = 200 * time.Millisecond
	DefaultHookTimeout   = 10 * time.Second
	// DefaultDrainTimeout bounds a hand-over drain. Kubernetes clients re-list and re-watch every 5-10
	// minutes (client-go's reflector picks a watch timeout between 5 and 10 min), so in 5 minutes most long
	// watches through the old holder end by themselves and the rest are closed once, spread over none of the
	// new holder's start-up.
	DefaultDrainTimeout   = 5 * time.Minute
	DefaultBarrierTimeout = 5 * time.Second
)

// verifiesPerWindow is how many leader verifications start within one AnswerWindow by default: with three,
// one slow round still leaves a confirmation in time and the holder does not fall silent.
const verifiesPerWindow = 3

// ErrInvalidConfig is wrapped by every Config validation error (a *fielderr.Error naming the field).
var ErrInvalidConfig = errors.New("invalid vip config")

// Config configures a Manager. Zero durations and counts take the defaults above or, for the safety timing,
// derive from RaftHeartbeat.
type Config struct {
	// VIPs are the floating addresses (one per family for dual stack). The prefix length is the
	// subnet on the announcing interface; the address itself is configured as a host prefix.
	// Empty is allowed only for a Witness.
	VIPs []netip.Prefix
	// RaftHeartbeat is the cluster's Raft heartbeat timeout, required: no follower starts an election sooner
	// after it last heard from the leader. It bounds AnswerWindow (see "Safety timing" in the package
	// documentation).
	RaftHeartbeat time.Duration
	// AnswerWindow is how long one proof of leadership (a Barrier or VerifyLeader that started at t) lets
	// this node answer ARP/NDP and announce: until t + AnswerWindow. Zero = RaftHeartbeat; it must not exceed
	// RaftHeartbeat, or a paused and resumed holder could answer beside a new leader.
	AnswerWindow time.Duration
	// VerifyInterval is how often the holder confirms leadership with a quorum (VerifyLeader, bounded
	// by twice this interval). A refusal (not the leader any more) releases at once; a slow answer is
	// retried. Zero = AnswerWindow/3; it must be at most AnswerWindow/2, so that a confirmation arrives
	// before the window of the previous one closes and a healthy holder never falls silent.
	VerifyInterval time.Duration
	// GARPRefresh is the period of the level check + re-announcement while holding the VIP.
	GARPRefresh time.Duration
	// BurstCount announcements are sent BurstInterval apart right after acquiring.
	BurstCount    int
	BurstInterval time.Duration
	// Announce false sends no gratuitous ARP/NA at all (requests are still answered); it exists to
	// measure how much the announcements matter. NewManager does not default it: set it to true.
	Announce bool
	// Witness nodes vote but never hold the VIP: they transfer leadership away at once.
	Witness bool
	// Priority prefers a node: the leader transfers to a healthy peer of strictly higher priority
	// once it has held the VIP stably for PreemptDelay. Equal priorities (the default 0) never preempt.
	Priority int
	// PreemptDelay is how long the VIP must be held before preempting in favour of a higher-priority
	// peer (0 = at the first refresh after acquiring, like keepalived's preempt_delay 0).
	PreemptDelay time.Duration
	// OnAcquire and OnRelease run after acquiring / releasing (a shell command or an argv list, see
	// Hook), with VIPD_EVENT and VIPD_VIPS in the environment. They run asynchronously, in order,
	// bounded by HookTimeout; failures are logged and counted and never delay a release.
	OnAcquire, OnRelease Hook
	HookTimeout          time.Duration
	// HandoverDrain makes a planned move of the VIP (a hand-off to a healthier or preferred peer, or
	// Handover before leaving) keep this node's connections: it keeps the address to serve them, for up to
	// DrainTimeout, while the successor forwards their packets here. It needs a Kernel that is a Forwarder
	// (without one it is off). Crashes, partitions and pauses are not planned: they move the VIP as before.
	HandoverDrain bool
	// Ports are the frontends' ports on the VIP: the flows a drain keeps.
	Ports []uint16
	// DrainTimeout bounds a drain (zero = DefaultDrainTimeout).
	DrainTimeout time.Duration
	// BarrierTimeout bounds the barrier committed before acquiring, and each leadership transfer attempt.
	BarrierTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Metrics records vipd_vip_* metrics; nil records nothing.
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	if c.AnswerWindow == 0 {
		c.AnswerWindow = c.RaftHeartbeat
	}
	if c.VerifyInterval == 0 {
		c.VerifyInterval = c.AnswerWindow / verifiesPerWindow
	}
	if c.GARPRefresh == 0 {
		c.GARPRefresh = DefaultGARPRefresh
	}
	if c.BurstCount == 0 {
		c.BurstCount = DefaultBurstCount
	}
	if c.BurstInterval == 0 {
		c.BurstInterval = DefaultBurstInterval
	}
	if c.HookTimeout == 0 {
		c.HookTimeout = DefaultHookTimeout
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.BarrierTimeout == 0 {
		c.BarrierTimeout = DefaultBarrierTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// validate checks the config after setDefaults, so a zero field has its default or derived value here.
func (c *Config) validate() error {
	if err := c.validateVIPs(); err != nil {
		return err
	}
	if err := c.validateTiming(); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"GARPRefresh", c.GARPRefresh}, {"BurstInterval", c.BurstInterval}, {"HookTimeout", c.HookTimeout},
		{"BarrierTimeout", c.BarrierTimeout}, {"DrainTimeout", c.DrainTimeout},
	} {
		if d.v <= 0 {
			return fielderr.New(ErrInvalidConfig, d.name, "is %v: must be positive (zero takes the default)", d.v)
		}
	}
	if c.PreemptDelay < 0 {
		return fielderr.New(ErrInvalidConfig, "PreemptDelay", "is %v: must not be negative", c.PreemptDelay)
	}
	if c.BurstCount < 0 {
		return fielderr.New(ErrInvalidConfig, "BurstCount", "is %d: must not be negative", c.BurstCount)
	}
	if c.HandoverDrain && len(c.Ports) == 0 && !c.Witness {
		return invalid("Ports", "is empty: a hand-over drain needs the frontends' ports on the VIP")
	}
	if err := c.OnAcquire.validate("OnAcquire"); err != nil {
		return err
	}
	return c.OnRelease.validate("OnRelease")
}

func invalid(field, format string, args ...any) error {
	return fielderr.New(ErrInvalidConfig, field, format, args...)
}

func (c *Config) validateVIPs() error {
	if len(c.VIPs) == 0 && !c.Witness {
		return fielderr.New(ErrInvalidConfig, "VIPs", "is empty: give at least one address, or run as a {Witness}")
	}
	seen := make(map[netip.Addr]bool)
	for i, p := range c.VIPs {
		field := "VIPs[" + strconv.Itoa(i) + "]"
		if !p.IsValid() {
			return fielderr.New(ErrInvalidConfig, field, "%v is not a valid prefix such as 10.0.0.50/24", p)
		}
		a := p.Addr()
		if a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return fielderr.New(ErrInvalidConfig, field, "%v must be a unicast, non-loopback address", p)
		}
		if seen[a] {
			return fielderr.New(ErrInvalidConfig, field, "%v is given twice", p)
		}
		seen[a] = true
	}
	return nil
}

// validateTiming enforces 2 × VerifyInterval ≤ AnswerWindow ≤ RaftHeartbeat: the second inequality is the
// safety argument of the package documentation, the first keeps a healthy holder answering.
func (c *Config) validateTiming() error {
	switch {
	case c.RaftHeartbeat <= 0:
		return fielderr.New(ErrInvalidConfig, "RaftHeartbeat",
			"is %v: give the cluster's Raft heartbeat timeout; it bounds how long one proof of leadership lets "+
				"this node answer for the VIP", c.RaftHeartbeat)
	case c.AnswerWindow <= 0:
		return fielderr.New(ErrInvalidConfig, "AnswerWindow", "is %v: must be positive (zero = {RaftHeartbeat})",
			c.AnswerWindow)
	case c.AnswerWindow > c.RaftHeartbeat:
		return fielderr.New(ErrInvalidConfig, "AnswerWindow",
			"is %v, longer than {RaftHeartbeat} (%v): a paused holder could answer for the VIP after a new leader "+
				"was elected; use at most {RaftHeartbeat}", c.AnswerWindow, c.RaftHeartbeat)
	case c.VerifyInterval <= 0:
		return fielderr.New(ErrInvalidConfig, "VerifyInterval",
			"is %v: must be positive (zero = a third of {AnswerWindow})", c.VerifyInterval)
	case 2*c.VerifyInterval > c.AnswerWindow:
		return fielderr.New(ErrInvalidConfig, "VerifyInterval",
			"is %v, more than half of {AnswerWindow} (%v): a confirmation could arrive after the window of the "+
				"previous one closed and the holder would fall silent; use at most %v",
			c.VerifyInterval, c.AnswerWindow, c.AnswerWindow/2)
	}
	return nil
}
