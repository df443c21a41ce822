package health

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/vipd/vipd/internal/fielderr"
)

// ErrInvalidConfig is wrapped by every validation error of this package. The errors are *fielderr.Error
// values naming the Config (or CheckConfig) field at fault; the agent renders the flag name.
var ErrInvalidConfig = errors.New("invalid health check configuration")

// Weight bounds of a Backend. Weight 0 means "not set" and is taken as DefaultWeight, so a list built from
// plain addresses (BackendList) and a YAML entry without `weight:` behave alike.
const (
	DefaultWeight = 1
	MaxWeight     = 256
)

// Backend is one upstream of a Monitor: an address and its share of new connections.
//
// Weight is a static share of new connections relative to the other backends (1..MaxWeight; 0 means
// DefaultWeight). Round robin sends a backend of weight 3 three connections for every one to a backend of
// weight 1, interleaved (see Monitor.Healthy); least-conn uses it only to break ties. Taking a backend out of
// service for maintenance is not a weight: it is a runtime state, see Monitor.SetDrain.
type Backend struct {
	Addr   string
	Weight int
}

// BackendList returns addrs as Backends of the default weight: the list of the -backend flag.
func BackendList(addrs ...string) []Backend {
	out := make([]Backend, len(addrs))
	for i, a := range addrs {
		out[i] = Backend{Addr: a}
	}
	return out
}

// weight returns b's effective weight.
func (b Backend) weight() int {
	if b.Weight == 0 {
		return DefaultWeight
	}
	return b.Weight
}

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
	// Logger receives one line per state change; nil discards. Fixed at NewMonitor (Update ignores it).
	Logger *slog.Logger
	// Metrics records states, transitions and checks, usually a frontend's view (Metrics.Frontend); nil
	// records nothing. Fixed at NewMonitor (Update ignores it).
	Metrics *Metrics
	// Clock drives the probe schedule; nil means the wall clock. Fixed at NewMonitor (Update ignores it).
	Clock Clock
	// FirstDelay picks each backend's delay before its first check, given
	// the exclusive upper bound min(Interval, 1s); results outside
	// [0, limit) are clamped. nil means uniformly random, so backends are
	// not probed in lock-step. Tests set it to be deterministic. Fixed at NewMonitor (Update ignores it).
	FirstDelay func(limit time.Duration) time.Duration
}

func invalid(field, format string, args ...any) error {
	return fielderr.New(ErrInvalidConfig, field, format, args...)
}

// validate checks cfg and backends, naming the field at fault ("Backends" for the list, "Backends[i].Weight"
// for one weight).
func validate(cfg Config, backends []Backend) error {
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
	for i, b := range backends {
		if err := ValidateAddr(b.Addr); err != nil {
			return invalid("Backends", "%v", err)
		}
		if seen[b.Addr] {
			return invalid("Backends", "%s is listed twice: list each backend once", b.Addr)
		}
		seen[b.Addr] = true
		if b.Weight < 0 || b.Weight > MaxWeight {
			return invalid(fmt.Sprintf("Backends[%d].Weight", i), "weight %d of %s is out of range 1-%d (0 or unset means %d)",
				b.Weight, b.Addr, MaxWeight, DefaultWeight)
		}
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
	if !validHost(host, strings.HasPrefix(addr, "[")) {
		return errors.New(strconv.Quote(addr) + " has an invalid host: want an IP address or a DNS name, e.g. 10.0.0.21:6443, [fd00::21]:6443 or [fe80::21%eth0]:6443")
	}
	// Digits only: Atoi also takes a sign, which the dialer accepts and an HTTP check's URL does not.
	if !digits(port) {
		return errors.New("port " + strconv.Quote(port) + " in " + strconv.Quote(addr) + " is not a number: write it in digits, e.g. 10.0.0.21:6443")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port " + strconv.Quote(port) + " in " + strconv.Quote(addr) + " is out of range 1-65535")
	}
	return nil
}

func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// validHost reports whether host is something a dialer can reach and an HTTP check can name in its URL: an
// IP address (an IPv6 one when it was written in brackets, with a zone of letters, digits, '.', '_' and '-'
// — an interface name, or its index) or a DNS name.
func validHost(host string, bracketed bool) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return (!bracketed || ip.Is6()) && nameChars(ip.Zone())
	}
	return !bracketed && len(host) <= 253 && nameChars(host)
}

func nameChars(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}
