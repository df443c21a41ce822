package health

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// ErrInvalidConfig is wrapped by every validation error of this package. The errors are *fielderr.Error
// values naming the Config (or CheckConfig) field at fault; the agent renders the flag name.
var ErrInvalidConfig = errors.New("invalid health check configuration")

// Config configures a Monitor.
type Config struct {
	// Interval between the end of one check of a backend and the start of
	// the next. Must be > 0.
	Interval time.Duration
	// Timeout bounds each check. Must be > 0.
	Timeout time.Duration
	// Rise is the number of consecutive successes that make an unhealthy
	// backend healthy. Must be >= 1.
	Rise int
	// Fall is the number of consecutive failures that make a backend
	// unhealthy. Must be >= 1.
	Fall int
	// MinHealthy is how many backends must be healthy for this node to be
	// healthy (see Node); 0 is taken as 1. It may not exceed the number of
	// backends, which would make the node never healthy.
	MinHealthy int
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

func invalid(field, format string, args ...any) error {
	return fielderr.New(ErrInvalidConfig, field, format, args...)
}

// validate checks cfg and backends, naming the field at fault ("Backends" for the list).
func validate(cfg Config, backends []string) error {
	switch {
	case cfg.Interval <= 0:
		return invalid("Interval", "must be greater than 0, got %s: e.g. 2s", cfg.Interval)
	case cfg.Timeout <= 0:
		return invalid("Timeout", "must be greater than 0, got %s: e.g. 1s", cfg.Timeout)
	case cfg.Rise < 1:
		return invalid("Rise", "must be at least 1, got %d", cfg.Rise)
	case cfg.Fall < 1:
		return invalid("Fall", "must be at least 1, got %d", cfg.Fall)
	case cfg.Checker == nil:
		return invalid("Checker", "no health checker configured")
	case len(backends) == 0:
		return invalid("Backends", "at least one backend is required: give host:port (repeatable, or comma-separated)")
	case cfg.MinHealthy < 0 || cfg.MinHealthy > len(backends):
		return invalid("MinHealthy", "must be between 0 and the number of backends (%d), got %d", len(backends), cfg.MinHealthy)
	}
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		if err := ValidateAddr(b); err != nil {
			return invalid("Backends", "%v", err)
		}
		if seen[b] {
			return invalid("Backends", "%s is listed twice: list each backend once", b)
		}
		seen[b] = true
	}
	return nil
}

// ValidateAddr checks that addr is a dialable host:port (a host, and a port in 1-65535). Its message names the
// value, not the field.
func ValidateAddr(addr string) error {
	if addr == "" {
		return errors.New("empty address: want host:port, e.g. 10.0.0.21:6443")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(strconv.Quote(addr) + " is not host:port: use e.g. 10.0.0.21:6443")
	}
	if host == "" {
		return errors.New(strconv.Quote(addr) + " has no host: use e.g. 10.0.0.21:6443")
	}
	if strings.ContainsAny(host, " /") {
		return errors.New(strconv.Quote(addr) + " has an invalid host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port " + strconv.Quote(port) + " in " + strconv.Quote(addr) + " is out of range 1-65535")
	}
	return nil
}
