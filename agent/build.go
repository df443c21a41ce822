package agent

import (
	"net/netip"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/proxy"
	"github.com/vipd/vipd/vip"
)

// Building the components is the one validation path: each constructor validates its own configuration and
// starts nothing, and flagError names the flag. New, `vipd validate` and reload all come through here.

// defaultFrontend names the one frontend the flags describe (health.Node and metric labels need a name).
const defaultFrontend = "default"

// frontend is one listener: its backends, their health checks and the proxy between them.
type frontend struct {
	name    string
	listen  string
	monitor *health.Monitor
	node    *health.Node
	proxy   *proxy.Proxy
}

func (a *Agent) buildFrontend() (*frontend, error) {
	cfg := a.cfg
	checker, err := health.NewChecker(health.CheckConfig{
		Type: cfg.Check, Path: cfg.CheckPath,
		CAFile: cfg.CheckCAFile, CertFile: cfg.CheckCertFile, KeyFile: cfg.CheckKeyFile,
		InsecureSkipVerify: cfg.CheckInsecure,
	})
	if err != nil {
		return nil, flagError(err, healthFlags)
	}
	healthMetrics := health.NewMetrics(a.reg)
	mon, err := health.NewMonitor(health.Config{
		Interval:   cfg.CheckInterval,
		Timeout:    cfg.CheckTimeout,
		Rise:       cfg.Rise,
		Fall:       cfg.Fall,
		MinHealthy: cfg.MinHealthy,
		Checker:    checker,
		Logger:     a.log.With("component", "health"),
		Metrics:    healthMetrics.Frontend(defaultFrontend),
	}, health.BackendList(cfg.Backends...))
	if err != nil {
		return nil, flagError(err, healthFlags)
	}
	balance, err := proxy.ParseBalance(cfg.Balance)
	if err != nil {
		return nil, flagError(err, proxyFlags)
	}
	p, err := proxy.New(proxy.Config{
		Balance:      balance,
		DialTimeout:  cfg.DialTimeout,
		IdleTimeout:  cfg.IdleTimeout,
		KeepAlive:    cfg.KeepAlive,
		DrainTimeout: cfg.DrainTimeout,
		MaxConns:     cfg.MaxConns,
		Retries:      cfg.Retries,
		Logger:       a.log.With("component", "proxy"),
		Metrics:      proxy.NewMetrics(a.reg).Frontend(defaultFrontend),
	}, mon)
	if err != nil {
		return nil, flagError(err, proxyFlags)
	}
	node := health.NewNode(health.WithMetrics(healthMetrics))
	node.SetFrontend(defaultFrontend, mon)
	return &frontend{name: defaultFrontend, listen: cfg.Listen, monitor: mon, node: node, proxy: p}, nil
}

func (a *Agent) buildCluster() error {
	cfg := a.cfg
	var key []byte
	if cfg.Encrypt != "" {
		k, err := DecodeKey(cfg.Encrypt)
		if err != nil {
			return err
		}
		key = k
	}
	bind := cfg.Bind
	if bind == "" && cfg.Dev {
		bind = "127.0.0.1" // a dev cluster of one talks to nobody
	}
	c, err := cluster.New(cluster.Config{
		NodeName:         cfg.Node,
		BindAddr:         bind,
		AdvertiseAddr:    cfg.Advertise,
		GossipPort:       cfg.GossipPort,
		RaftPort:         cfg.RaftPort,
		DataDir:          cfg.DataDir, // empty with -dev: throwaway state
		BootstrapExpect:  cfg.BootstrapExpect,
		Join:             cfg.Join,
		EncryptKey:       key,
		Dev:              cfg.Dev,
		HeartbeatTimeout: cfg.RaftHeartbeat,
		ElectionTimeout:  cfg.RaftElection,
		LeaseTimeout:     cfg.RaftLease,
		Logger:           a.log.With("component", "cluster"),
		Version:          a.opts.Version,
	})
	if err != nil {
		return flagError(err, clusterFlags)
	}
	a.cluster = c
	return nil
}

func (a *Agent) buildVIP() error {
	cfg := a.cfg
	for _, v := range cfg.VIPs {
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return invalid("vip", "%q is not an address with prefix length: use e.g. -vip 10.0.0.50/24", v)
		}
		a.vips = append(a.vips, p)
	}
	kernel := a.opts.Kernel
	if kernel == nil && !cfg.Witness {
		iface, err := vip.ResolveInterface(cfg.Interface, a.vips)
		if err != nil {
			return flagError(err, vipFlags)
		}
		k, err := vip.NewLinuxKernel(iface, a.log.With("component", "vip"))
		if err != nil {
			return flagError(err, vipFlags)
		}
		a.closeKernel = k.Close
		kernel = k
	}
	heartbeat := cfg.RaftHeartbeat
	if heartbeat == 0 {
		heartbeat = cluster.DefaultHeartbeat
	}
	m, err := vip.NewManager(vip.Config{
		VIPs:           a.vips,
		GARPRefresh:    cfg.GARPRefresh,
		Announce:       cfg.GARP,
		BurstCount:     5,
		Witness:        cfg.Witness,
		Priority:       cfg.Priority,
		PreemptDelay:   cfg.PreemptDelay,
		OnAcquire:      cfg.OnAcquire,
		OnRelease:      cfg.OnRelease,
		HookTimeout:    cfg.HookTimeout,
		VerifyInterval: heartbeat / 3, // three confirmations per window, so one slow round does not mute ARP
		AnswerWindow:   heartbeat,     // no follower may be elected sooner after a confirmation
		Logger:         a.log.With("component", "vip"),
		Metrics:        vip.NewMetrics(a.reg),
	}, vip.NewClusterLeadership(a.cluster, cfg.Node), a.healthSource(), kernel)
	if err != nil {
		if a.closeKernel != nil {
			_ = a.closeKernel()
		}
		return flagError(err, vipFlags)
	}
	a.vip = m
	return nil
}
