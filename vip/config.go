package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Defaults applied by NewManager to zero Config fields.
const (
	DefaultGARPRefresh    = 3 * time.Second
	DefaultBurstCount     = 5
	DefaultBurstInterval  = 200 * time.Millisecond
	DefaultHookTimeout    = 10 * time.Second
	DefaultVerifyInterval = 250 * time.Millisecond // half of Raft's default 500 ms leader lease
	DefaultBarrierTimeout = 5 * time.Second
)

// ErrInvalidConfig is wrapped by every Config validation error.
var ErrInvalidConfig = errors.New("invalid vip config")

// Config configures a Manager. Zero durations and counts take the defaults above.
type Config struct {
	// VIPs are the floating addresses (one per family for dual stack). The prefix length is the
	// subnet on the announcing interface; the address itself is configured as a host prefix.
	// Empty is allowed only for a Witness.
	VIPs []netip.Prefix
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
	// OnAcquire and OnRelease are shell commands (sh -c) run after acquiring / releasing, with
	// VIPD_EVENT and VIPD_VIPS in the environment. They run asynchronously, in order, bounded by
	// HookTimeout; failures are logged and counted and never delay a release.
	OnAcquire, OnRelease string
	HookTimeout          time.Duration
	// VerifyInterval is how often the holder confirms leadership with a quorum (VerifyLeader, bounded
	// by twice this interval). A refusal (not the leader any more) releases at once; a slow answer is
	// retried. Keep it at or below half of AnswerWindow so confirmations arrive before the window closes.
	VerifyInterval time.Duration
	// AnswerWindow is how long one proof of leadership (a Barrier or VerifyLeader that started at t) lets
	// this node answer ARP/NDP and announce: until t + AnswerWindow. Set it to the Raft heartbeat timeout,
	// the earliest a follower may start an election after hearing from the leader, so a paused and resumed
	// holder can never answer beside a new one. Zero = 2 × VerifyInterval.
	AnswerWindow time.Duration
	// BarrierTimeout bounds the barrier committed before acquiring.
	BarrierTimeout time.Duration
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Metrics records vipd_vip_* metrics; nil records nothing.
	Metrics *Metrics
	// Clock is the time source; nil means the real clock.
	Clock Clock
}

func (c *Config) setDefaults() {
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
	if c.VerifyInterval == 0 {
		c.VerifyInterval = DefaultVerifyInterval
	}
	if c.AnswerWindow == 0 {
		c.AnswerWindow = 2 * c.VerifyInterval
	}
	if c.BarrierTimeout == 0 {
		c.BarrierTimeout = DefaultBarrierTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
}

func (c *Config) validate() error {
	if len(c.VIPs) == 0 && !c.Witness {
		return fmt.Errorf("%w: VIPs is empty: give at least one -vip (or run as -witness)", ErrInvalidConfig)
	}
	seen := make(map[netip.Addr]bool)
	for _, p := range c.VIPs {
		if !p.IsValid() {
			return fmt.Errorf("%w: VIP %v is not a valid prefix such as 10.0.0.50/24", ErrInvalidConfig, p)
		}
		a := p.Addr()
		if a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return fmt.Errorf("%w: VIP %v must be a unicast, non-loopback address", ErrInvalidConfig, p)
		}
		if seen[a] {
			return fmt.Errorf("%w: VIP %v given twice", ErrInvalidConfig, p)
		}
		seen[a] = true
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"GARPRefresh", c.GARPRefresh}, {"BurstInterval", c.BurstInterval}, {"HookTimeout", c.HookTimeout},
		{"VerifyInterval", c.VerifyInterval}, {"BarrierTimeout", c.BarrierTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%w: %s is %v, must be positive", ErrInvalidConfig, d.name, d.v)
		}
	}
	if c.PreemptDelay < 0 {
		return fmt.Errorf("%w: PreemptDelay is %v, must not be negative", ErrInvalidConfig, c.PreemptDelay)
	}
	if c.BurstCount < 0 {
		return fmt.Errorf("%w: BurstCount is %d, must not be negative", ErrInvalidConfig, c.BurstCount)
	}
	return nil
}
