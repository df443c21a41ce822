package health

import (
	"context"
	"fmt"
	"log/slog"
)

// Update replaces the backend list and the check settings of a live Monitor, as a reload does. It validates
// exactly like NewMonitor and, on error, changes nothing. Otherwise it applies at once:
//
//   - A backend in both lists keeps its state, its rise/fall history, Since, its drain flag and its probe
//     schedule; only its weight is taken from the new list.
//   - A removed backend stops being checked (its probe goroutine ends; a check in flight is cancelled and
//     not recorded), leaves Healthy at once, is forgotten by ReportDialFailure and SetDrain, and its metric
//     series are deleted.
//   - An added backend starts StateUnknown, like every backend of a new Monitor, and, if Run is active, gets
//     its probe goroutine at once (first check after the usual random first delay).
//   - Checker and Timeout apply from each backend's next check; Interval from each backend's next wait (a
//     wait in progress is shortened or lengthened to the new Interval after the last check); Rise and Fall
//     from each backend's next result, keeping its current state; MinHealthy at once (Node re-reads it).
//
// Logger, Metrics, Clock and FirstDelay of cfg are ignored: they stay those given to NewMonitor. Subscribers
// and Node are signalled once.
func (m *Monitor) Update(cfg Config, backends []Backend) error {
	if err := validate(cfg, backends); err != nil {
		return err
	}
	m.mu.Lock()
	old := m.cfg
	cfg.Logger, cfg.Metrics, cfg.Clock, cfg.FirstDelay = old.Logger, old.Metrics, old.Clock, old.FirstDelay
	m.cfg = cfg
	thresholds := cfg.Rise != old.Rise || cfg.Fall != old.Fall
	interval := cfg.Interval != old.Interval

	keep := make(map[string]bool, len(backends))
	list := make([]*backend, 0, len(backends))
	for _, nb := range backends {
		keep[nb.Addr] = true
		b, ok := m.byAddr[nb.Addr]
		if !ok {
			b = m.newBackend(nb)
			m.byAddr[b.addr] = b
			if m.run != nil {
				m.startLocked(b)
			}
			m.log.Info("backend added", "backend", b.addr, "weight", b.weight)
			list = append(list, b)
			continue
		}
		if w := nb.weight(); w != b.weight {
			m.log.Info("backend weight changed", "backend", b.addr, "from", b.weight, "to", w)
			b.weight = w
		}
		if thresholds {
			b.tracker.SetThresholds(cfg.Rise, cfg.Fall)
		}
		if interval {
			select {
			case b.wake <- struct{}{}:
			default: // a wake is pending already
			}
		}
		list = append(list, b)
	}
	for _, b := range m.backends {
		if keep[b.addr] {
			continue
		}
		b.removed = true
		if b.stop != nil {
			b.stop()
			b.stop = nil
		}
		delete(m.byAddr, b.addr)
		m.metrics.deleteBackend(b.addr)
		m.log.Info("backend removed", "backend", b.addr, "state", b.tracker.State().String())
	}
	m.backends = list
	m.publishLocked()
	m.log.Debug("health configuration updated", "backends", len(list), "interval", cfg.Interval,
		"timeout", cfg.Timeout, "rise", cfg.Rise, "fall", cfg.Fall, "min_healthy", cfg.MinHealthy)
	m.unlockAndNotify()
	return nil
}

// SetDrain takes the backend at addr out of service (drained true) or puts it back (false), for operator
// maintenance (`vipd backend drain`). A drained backend is still checked and keeps its health state, shows in
// Backends with Drained true, but is left out of Healthy, so it gets no new connections; connections already
// open through it are not touched. Drain is a runtime state: Update keeps it for a backend that stays, and a
// backend that is removed and added again starts undrained. An address that is not a backend gives an error
// wrapping ErrUnknownBackend. Setting the current value again is a no-op.
func (m *Monitor) SetDrain(addr string, drained bool) error {
	m.mu.Lock()
	b, ok := m.byAddr[addr]
	if !ok {
		m.mu.Unlock()
		return fmt.Errorf("%w %q", ErrUnknownBackend, addr)
	}
	if b.drained == drained {
		m.mu.Unlock()
		return nil
	}
	b.drained = drained
	m.metrics.setDrained(addr, drained)
	m.publishLocked()
	level, msg := slog.LevelInfo, "backend back in service"
	if drained {
		level, msg = slog.LevelWarn, "backend drained: no new connections"
	}
	m.log.Log(context.Background(), level, msg, "backend", addr, "state", b.tracker.State().String())
	m.unlockAndNotify()
	return nil
}
