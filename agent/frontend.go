package agent

import (
	"context"
	"fmt"
	"net"

	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/proxy"
)

// frontend is one listener: its backends, their health checks and the proxy between them. Built (and so
// validated) by buildFrontend, started by launch, stopped by retire (a reload removed it) or by shutdown.
type frontend struct {
	spec    frontendSpec
	monitor *health.Monitor
	proxy   *proxy.Proxy
	// hm and pm are this frontend's views of the agent's metrics; their series go when the frontend does.
	hm *health.Metrics
	pm *proxy.Metrics

	// Set by launch.
	stopProxy, stopChecks context.CancelFunc
	served, checked       chan struct{} // closed when Serve, monitor.Run have returned
}

// buildFrontend builds s's checker, monitor and proxy: each validates its own settings, and settingError
// names them as the operator wrote them. It starts nothing.
func (a *Agent) buildFrontend(s frontendSpec, cfg Config, frontends int) (*frontend, error) {
	checker, err := health.NewChecker(s.check)
	if err != nil {
		return nil, settingError(err, s.fieldName)
	}
	fe := &frontend{spec: s, hm: a.healthMetrics.Frontend(s.name), pm: a.proxyMetrics.Frontend(s.name)}
	hc := healthConfig(s, checker)
	hc.Logger, hc.Metrics = a.log.With("component", "health", "frontend", s.name), fe.hm
	if fe.monitor, err = health.NewMonitor(hc, s.healthBackends()); err != nil {
		return nil, settingError(err, s.fieldName)
	}
	pc, err := proxySettings(s, cfg, frontends)
	if err != nil {
		return nil, settingError(err, s.fieldName)
	}
	pc.Logger, pc.Metrics = a.log.With("component", "proxy", "frontend", s.name), fe.pm
	if fe.proxy, err = proxy.New(pc, fe.monitor); err != nil {
		return nil, settingError(err, s.fieldName)
	}
	return fe, nil
}

// healthConfig is s's monitor configuration, without logger and metrics (which a reload keeps).
func healthConfig(s frontendSpec, checker health.Checker) health.Config {
	return health.Config{Interval: s.interval, Timeout: s.timeout, Rise: s.rise, Fall: s.fall, MinHealthy: s.minHealthy, Checker: checker}
}

// proxySettings is s's proxy configuration under cfg's global limits, without logger and metrics. -max-conns 0
// means: as many as the file descriptor limit allows, shared by the frontends.
func proxySettings(s frontendSpec, cfg Config, frontends int) (proxy.Config, error) {
	balance, err := proxy.ParseBalance(s.balance)
	if err != nil {
		return proxy.Config{}, err
	}
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		if maxConns, err = proxy.DefaultMaxConns(frontends); err != nil {
			return proxy.Config{}, fmt.Errorf("-max-conns 0 (from the file descriptor limit): %w", err)
		}
	}
	return proxy.Config{
		Balance: balance, DialTimeout: cfg.DialTimeout, IdleTimeout: cfg.IdleTimeout, KeepAlive: cfg.KeepAlive,
		DrainTimeout: cfg.DrainTimeout, MaxConns: maxConns, Retries: cfg.Retries,
	}, nil
}

// listen binds fe's listener; the listener inherits the keepalive settings accepted sockets need.
func (fe *frontend) listen(ctx context.Context) (net.Listener, error) {
	ln, err := fe.proxy.Listen(ctx, fe.spec.listen)
	if err != nil {
		return nil, &ConfigError{msg: fmt.Sprintf("%s %s: %v", fe.spec.fieldName("Listen"), fe.spec.listen, err), cause: err}
	}
	return ln, nil
}

// launch starts fe's health checks and proxy on ln, as part of rt, and adds it to the node's health. A proxy
// that stops with an error fails the agent.
func (a *Agent) launch(rt *running, fe *frontend, ln net.Listener) {
	name := fe.spec.name
	checkCtx, stopChecks := context.WithCancel(rt.base)
	proxyCtx, stopProxy := context.WithCancel(rt.base)
	fe.stopChecks, fe.stopProxy = stopChecks, stopProxy
	fe.served, fe.checked = make(chan struct{}), make(chan struct{})
	a.node.SetFrontend(name, fe.monitor)
	rt.run(func() error {
		defer close(fe.checked)
		fe.monitor.Run(checkCtx)
		return nil
	})
	a.node.SetListenerUp(name, true)
	rt.run(func() error {
		defer close(fe.served)
		if err := fe.proxy.Serve(proxyCtx, ln); err != nil {
			a.node.SetListenerUp(name, false)
			return fmt.Errorf("frontend %s on %s: %w", name, fe.spec.listen, err)
		}
		return nil
	})
	a.log.Info("frontend serving", "frontend", name, "listen", ln.Addr().String(), "backends", len(fe.spec.backends))
}

// retire stops a frontend a reload removed: it stops accepting at once and leaves the node's health, open
// connections finish for up to -drain-timeout, then its checks stop and its metric series go.
func (a *Agent) retire(rt *running, fe *frontend) {
	name := fe.spec.name
	a.node.RemoveFrontend(name)
	fe.stopProxy()
	rt.run(func() error {
		<-fe.served
		fe.stopChecks()
		<-fe.checked
		if !a.hasFrontend(name) { // a later reload may have added one of the same name
			fe.hm.DeleteSeries()
			fe.pm.DeleteSeries()
		}
		a.log.Info("frontend removed", "frontend", name)
		return nil
	})
}

// Frontends returns the running frontends, in configuration order; the slice is not shared.
func (a *Agent) frontendList() []*frontend {
	a.feMu.RLock()
	defer a.feMu.RUnlock()
	return append([]*frontend(nil), a.frontends...)
}

func (a *Agent) hasFrontend(name string) bool {
	for _, fe := range a.frontendList() {
		if fe.spec.name == name {
			return true
		}
	}
	return false
}

func (a *Agent) setFrontends(fes []*frontend) {
	a.feMu.Lock()
	a.frontends = fes
	a.feMu.Unlock()
}

// healthBackends is s's backend list as the health monitor takes it.
func (s frontendSpec) healthBackends() []health.Backend {
	out := make([]health.Backend, len(s.backends))
	for i, b := range s.backends {
		out[i] = health.Backend{Addr: b.Addr, Weight: b.Weight}
	}
	return out
}
