package proxy

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// Defaults applied to zero Config fields. They are exported so the CLI can print them in its help.
const (
	// DefaultDialTimeout bounds one backend connect attempt; a kube-apiserver that does not answer a SYN
	// within 5 s is better skipped for the next healthy one.
	DefaultDialTimeout = 5 * time.Second
	// DefaultKeepAlive is the TCP keepalive idle time and probe interval on both sockets, so a vanished peer
	// (a dead client laptop, a powered-off backend) frees its connection within minutes.
	DefaultKeepAlive = 30 * time.Second
	// DefaultDrainTimeout is how long Serve lets open connections finish after its context is done before it
	// closes them; long watches of a Kubernetes API never finish on their own.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultMaxRetries caps the default number of extra dial attempts per connection (fewer if fewer
	// backends are healthy).
	DefaultMaxRetries = 2
)

// ErrInvalidConfig is wrapped by every validation error from New.
var ErrInvalidConfig = errors.New("invalid proxy config")

// Balance selects how a connection picks among the healthy backends.
type Balance int

const (
	// RoundRobin cycles through the healthy backends, one connection each (the zero value).
	RoundRobin Balance = iota
	// LeastConn picks the healthy backend with the fewest active connections through this proxy; ties go
	// round robin. It suits long-lived connections such as Kubernetes watches.
	LeastConn
)

// String returns the flag spelling: "round-robin" or "least-conn".
func (b Balance) String() string {
	switch b {
	case RoundRobin:
		return "round-robin"
	case LeastConn:
		return "least-conn"
	default:
		return fmt.Sprintf("Balance(%d)", int(b))
	}
}

// ParseBalance parses the spelling of a Balance: "round-robin" or "least-conn", and HAProxy's "roundrobin"
// and "leastconn", so the CLI, the config file and HAProxy users share one vocabulary. Its error names the
// Balance field.
func ParseBalance(s string) (Balance, error) {
	switch s {
	case "round-robin", "roundrobin", "rr":
		return RoundRobin, nil
	case "least-conn", "leastconn":
		return LeastConn, nil
	default:
		return 0, invalid("Balance", "%q is not round-robin or least-conn", s)
	}
}

func invalid(field, format string, args ...any) error {
	return fielderr.New(ErrInvalidConfig, field, format, args...)
}

// Config tunes a Proxy. Zero values mean the documented defaults, so Config{} is a working proxy.
type Config struct {
	// Balance is the backend selection policy; zero is RoundRobin.
	Balance Balance
	// DialTimeout bounds each backend connect attempt. Zero means DefaultDialTimeout (5 s).
	DialTimeout time.Duration
	// IdleTimeout closes both sides of a connection after no byte moved in either direction for this long.
	// Zero means never. It is enforced by one coarse sweeper per Serve (granularity IdleTimeout/4), not by
	// per-read deadlines.
	IdleTimeout time.Duration
	// KeepAlive is the TCP keepalive period on the client and backend sockets. Zero means DefaultKeepAlive
	// (30 s); negative disables keepalive.
	KeepAlive time.Duration
	// DrainTimeout is how long Serve waits for open connections after its context is done before it closes
	// them. Zero means DefaultDrainTimeout (30 s).
	DrainTimeout time.Duration
	// MaxConns limits concurrently proxied connections; beyond it new connections are reset at once.
	// Zero means unlimited.
	MaxConns int
	// Retries is how many other healthy backends a connection tries after a failed dial. Zero means
	// min(DefaultMaxRetries, healthy-1); negative disables retries. Each backend is tried at most once per
	// connection, so the bound is also healthy-1.
	Retries int
	// Logger receives state changes (outage start/end) and, at debug level, per-connection errors.
	// Nil discards.
	Logger *slog.Logger
	// Metrics records Prometheus metrics; nil records none.
	Metrics *Metrics
}

// validate reports the first invalid field, naming it, its value and the fix.
func (c Config) validate() error {
	switch {
	case c.Balance != RoundRobin && c.Balance != LeastConn:
		return invalid("Balance", "%d is not RoundRobin or LeastConn", int(c.Balance))
	case c.DialTimeout < 0:
		return invalid("DialTimeout", "%v is negative: use 0 for the default %v", c.DialTimeout, DefaultDialTimeout)
	case c.IdleTimeout < 0:
		return invalid("IdleTimeout", "%v is negative: use 0 for no idle timeout", c.IdleTimeout)
	case c.DrainTimeout < 0:
		return invalid("DrainTimeout", "%v is negative: use 0 for the default %v", c.DrainTimeout, DefaultDrainTimeout)
	case c.MaxConns < 0:
		return invalid("MaxConns", "%d is negative: use 0 for unlimited", c.MaxConns)
	}
	return nil
}

// withDefaults returns c with zero durations replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = DefaultKeepAlive
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// retries returns how many extra dial attempts a connection gets when n backends are healthy.
func (c Config) retries(n int) int {
	r := c.Retries
	switch {
	case r < 0:
		r = 0
	case r == 0:
		r = DefaultMaxRetries
	}
	return max(0, min(r, n-1))
}
