package health

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrInvalidConfig is wrapped by every NewMonitor validation error. The
// error's message names the flag, the value and the fix, and is meant to be
// printed verbatim by the CLI.
var ErrInvalidConfig = errors.New("invalid health check configuration")

// Config configures a Monitor.
type Config struct {
	// Interval between the end of one check of a backend and the start of
	// the next (-check-interval). Must be > 0.
	Interval time.Duration
	// Timeout bounds each check (-check-timeout). Must be > 0.
	Timeout time.Duration
	// Rise is the number of consecutive successes that make an unhealthy
	// backend healthy (-rise). Must be >= 1.
	Rise int
	// Fall is the number of consecutive failures that make a backend
	// unhealthy (-fall). Must be >= 1.
	Fall int
	// Checker probes each backend. Required.
	Checker Checker
	// Logger receives one line per state change; nil discards.
	Logger *slog.Logger
	// Metrics records states, transitions and checks; nil records nothing.
	Metrics *Metrics
	// Clock drives the probe schedule; nil means the wall clock.
	Clock Clock
	// FirstDelay picks each backend's delay before its first check, given
	// the exclusive upper bound min(Interval, 1s); results outside
	// [0, limit) are clamped. nil means uniformly random, so backends are
	// not probed in lock-step. Tests set it to be deterministic.
	FirstDelay func(limit time.Duration) time.Duration
}

// invalid returns a validation error with an operator-facing message.
func invalid(format string, args ...any) error {
	return &flagError{msg: fmt.Sprintf(format, args...), err: ErrInvalidConfig}
}

// validate checks cfg and backends, naming the flag at fault.
func validate(cfg Config, backends []string) error {
	switch {
	case cfg.Interval <= 0:
		return invalid("-check-interval must be greater than 0, got %s", cfg.Interval)
	case cfg.Timeout <= 0:
		return invalid("-check-timeout must be greater than 0, got %s", cfg.Timeout)
	case cfg.Rise < 1:
		return invalid("-rise must be at least 1, got %d", cfg.Rise)
	case cfg.Fall < 1:
		return invalid("-fall must be at least 1, got %d", cfg.Fall)
	case cfg.Checker == nil:
		return invalid("-check: no health checker configured")
	case len(backends) == 0:
		return invalid("-backend: at least one backend is required")
	}
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		if b == "" {
			return invalid("-backend: empty backend address")
		}
		if seen[b] {
			return invalid("-backend %s is given more than once; list each backend once", b)
		}
		seen[b] = true
	}
	return nil
}
