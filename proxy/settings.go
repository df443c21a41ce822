package proxy

import (
	"net"
)

// settings is the configuration in force: Config with its defaults applied and the dialer built from it.
// SetConfig replaces it whole and a connection reads it once (one atomic load), so a connection never sees
// half of an old and half of a new configuration.
type settings struct {
	Config
	dialer net.Dialer // for backends given by name; IP literals are dialed raw with DialTimeout and KeepAlive
}

// newSettings builds the settings for cfg, which must be validated and have its defaults applied.
func (p *Proxy) newSettings(cfg Config) *settings {
	s := &settings{Config: cfg, dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: cfg.KeepAlive}}
	if cfg.KeepAlive > 0 {
		// Idle and interval alike, probe count left at the system default: 3 setsockopt calls, not 4.
		s.dialer.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: cfg.KeepAlive, Interval: cfg.KeepAlive, Count: -1}
	}
	s.dialer.ControlContext = p.loopControl // refuse a dial to our own listener before it connects
	return s
}

// config returns the settings in force.
func (p *Proxy) config() *settings { return p.set.Load() }

// SetConfig validates cfg like New and applies it to what comes next, while Serve runs: Balance, Retries,
// DialTimeout and KeepAlive to the next connection (its dials and its client socket), MaxConns to the next
// accepted connection (lowering it below the open count refuses new ones; it closes none), IdleTimeout to
// the idle sweeper's next pass (which then judges every open connection by it, and starts or stops the
// sweeper), DrainTimeout to the next drain. Open connections are otherwise untouched. Logger and Metrics
// stay those given to New. On error nothing changes.
func (p *Proxy) SetConfig(cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	cur := p.config()
	cfg.Logger, cfg.Metrics = cur.Logger, cur.Metrics
	p.set.Store(p.newSettings(cfg))
	p.configChanged.Notify()
	p.log.Debug("proxy configuration updated", "balance", cfg.Balance, "dial_timeout", cfg.DialTimeout,
		"keepalive", cfg.KeepAlive, "max_conns", cfg.MaxConns, "retries", cfg.Retries,
		"idle_timeout", cfg.IdleTimeout, "drain_timeout", cfg.DrainTimeout)
	return nil
}
