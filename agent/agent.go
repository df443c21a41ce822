// Package agent wires one vipd node together: the proxy and its health checks, the cluster membership and Raft
// leadership, the VIP, and the admin API. It owns the order of start-up and, more importantly, of shutdown:
// the VIP is released first, then the node leaves the cluster, then open connections drain.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/internal/sched"
	"github.com/vipd/vipd/proxy"
	"github.com/vipd/vipd/vip"
)

// Options are the agent's dependencies that do not come from flags.
type Options struct {
	// Logger receives every component's logs; nil discards them.
	Logger *slog.Logger
	// Version is gossiped to peers and shown by `vipd members`.
	Version string
	// Kernel replaces the real netlink/ARP side of the VIP; tests pass an in-memory fake. Nil means the real
	// kernel on the configured interface.
	Kernel vip.Kernel
}

// Agent is one running vipd node. Build it with New, run it with Run.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	opts Options
	reg  *prometheus.Registry

	monitor *health.Monitor // nil for a witness
	node    *health.Node    // nil for a witness
	proxy   *proxy.Proxy    // nil for a witness
	cluster *cluster.Cluster
	vip     *vip.Manager
	vips    []netip.Prefix
	// closeKernel releases the raw sockets of the real VIP kernel side, if any.
	closeKernel func() error

	// leaveReq carries POST /v1/leave to Run; the reply channel reports the leave's outcome.
	leaveReq chan chan error
	// ready is closed once the proxy and admin listeners are bound; proxyAddr and adminAddr are set before.
	ready                chan struct{}
	proxyAddr, adminAddr net.Addr
}

// New validates cfg, checks everything that can be checked before listening (certificate files, the VIP
// interface, capabilities) and builds the components. It starts nothing: a failure here leaves nothing behind.
func New(cfg Config, opts Options) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:      cfg,
		log:      log,
		opts:     opts,
		reg:      prometheus.NewRegistry(),
		leaveReq: make(chan chan error),
		ready:    make(chan struct{}),
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if !cfg.Witness {
		if err := a.buildProxy(); err != nil {
			return nil, err
		}
	}
	if cfg.ClusterEnabled() {
		if err := a.buildCluster(); err != nil {
			return nil, err
		}
	}
	if len(cfg.VIPs) > 0 || cfg.Witness {
		if err := a.buildVIP(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Agent) buildProxy() error {
	cfg := a.cfg
	checker := health.NewTCPChecker()
	if cfg.Check != "tcp" {
		opts := health.HTTPOptions{Scheme: cfg.Check, Path: cfg.CheckPath}
		if cfg.Check == "https" {
			tlsCfg, err := health.LoadTLSConfig(cfg.CheckCAFile, cfg.CheckCertFile, cfg.CheckKeyFile, cfg.CheckInsecure)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			opts.TLS = tlsCfg
		}
		checker = health.NewHTTPChecker(opts)
	}
	mon, err := health.NewMonitor(health.Config{
		Interval: cfg.CheckInterval,
		Timeout:  cfg.CheckTimeout,
		Rise:     cfg.Rise,
		Fall:     cfg.Fall,
		Checker:  checker,
		Logger:   a.log.With("component", "health"),
		Metrics:  health.NewMetrics(a.reg),
	}, cfg.Backends)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	balance := proxy.RoundRobin
	if cfg.Balance == "least-conn" {
		balance = proxy.LeastConn
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
		Metrics:      proxy.NewMetrics(a.reg),
	}, mon)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	a.monitor, a.node, a.proxy = mon, health.NewNode(mon, cfg.MinHealthy), p
	return nil
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
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	a.cluster = c
	return nil
}

func (a *Agent) buildVIP() error {
	cfg := a.cfg
	for _, v := range cfg.VIPs {
		p, _ := netip.ParsePrefix(v) // validated
		a.vips = append(a.vips, p)
	}
	kernel := a.opts.Kernel
	if kernel == nil && !cfg.Witness {
		iface, err := vip.ResolveInterface(cfg.Interface, a.vips)
		if err != nil {
			return err
		}
		k, err := vip.NewLinuxKernel(iface, a.log.With("component", "vip"))
		if err != nil {
			return err
		}
		a.closeKernel = k.Close
		kernel = k
	}
	heartbeat := cfg.RaftHeartbeat
	if heartbeat == 0 {
		heartbeat = cluster.DefaultHeartbeat
	}
	m, err := vip.NewManager(vip.Config{
		VIPs:          a.vips,
		RaftHeartbeat: heartbeat, // vip derives its verification interval and answer window from it
		GARPRefresh:   cfg.GARPRefresh,
		Announce:      cfg.GARP,
		Witness:       cfg.Witness,
		Priority:      cfg.Priority,
		PreemptDelay:  cfg.PreemptDelay,
		OnAcquire:     cfg.OnAcquire,
		OnRelease:     cfg.OnRelease,
		HookTimeout:   cfg.HookTimeout,
		Logger:        a.log.With("component", "vip"),
		Metrics:       vip.NewMetrics(a.reg),
	}, vip.NewClusterLeadership(a.cluster, cfg.Node), a.healthSource(), kernel)
	if err != nil {
		if a.closeKernel != nil {
			_ = a.closeKernel()
		}
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	a.vip = m
	return nil
}

// healthSource is what gates VIP leadership: this node's own health, or for a witness a node that is never
// healthy, so leadership is always handed on.
func (a *Agent) healthSource() vip.HealthSource {
	if a.node == nil {
		return witnessHealth{}
	}
	return nodeHealth{a.node}
}

// Run starts every component and blocks until ctx is done (SIGTERM), `vipd leave` is called, or a component
// fails. It then shuts down in the order that keeps the VIP safe and clients served: release the VIP, leave the
// cluster (handing leadership on), drain the proxy. It returns nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	if a.cfg.Nice != 0 {
		if err := sched.SetNice(a.cfg.Nice); err != nil {
			a.log.Warn("cannot raise scheduling priority; Raft heartbeats may be late when the CPU is saturated (grant CAP_SYS_NICE or set -nice 0)",
				"nice", a.cfg.Nice, "err", err)
		}
	}
	// Listen before starting anything, so a port in use fails the start instead of leaving a half-started node.
	var ln net.Listener
	if a.proxy != nil {
		l, err := a.proxy.Listen(ctx, a.cfg.Listen) // keepalive set once, inherited by accepted sockets
		if err != nil {
			return fmt.Errorf("-listen %s: %w", a.cfg.Listen, err)
		}
		ln = l
	}
	adminLn, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return fmt.Errorf("-http-addr %s: %w", a.cfg.HTTPAddr, err)
	}
	if ln != nil {
		a.proxyAddr = ln.Addr()
	}
	a.adminAddr = adminLn.Addr()
	close(a.ready)
	a.log.Info("vipd agent starting", "version", a.opts.Version, "listen", a.cfg.Listen, "backends", a.cfg.Backends,
		"cluster", a.cfg.ClusterEnabled(), "vips", a.cfg.VIPs, "admin", adminLn.Addr().String())

	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	fatal := make(chan struct{})
	fail := func(err error) {
		errOnce.Do(func() { runErr = err; close(fatal) })
	}
	goFn := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}

	// Proxy, health checks and the admin API live until the very end of the shutdown.
	baseCtx, stopBase := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBase()
	proxyCtx, stopProxy := context.WithCancel(baseCtx)
	defer stopProxy()
	proxyDone := make(chan struct{})
	if a.proxy != nil {
		goFn(func() { a.monitor.Run(baseCtx) })
		a.node.SetListenerUp(true)
		goFn(func() {
			defer close(proxyDone)
			if err := a.proxy.Serve(proxyCtx, ln); err != nil {
				a.node.SetListenerUp(false)
				fail(fmt.Errorf("proxy on %s: %w", a.cfg.Listen, err))
			}
		})
	} else {
		close(proxyDone)
	}
	admin := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)}
	goFn(func() {
		if err := admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fail(fmt.Errorf("admin API on %s: %w", a.cfg.HTTPAddr, err))
		}
	})

	vipCtx, stopVIP := context.WithCancel(baseCtx)
	defer stopVIP()
	vipDone := make(chan struct{})
	if a.cluster != nil {
		if err := a.cluster.Start(baseCtx); err != nil {
			fail(fmt.Errorf("start cluster: %w", err))
		} else {
			goFn(func() { a.publishMeta(vipCtx) })
		}
	}
	select {
	case <-fatal:
		close(vipDone)
	default:
		if a.vip == nil || a.cluster == nil {
			close(vipDone)
			break
		}
		goFn(func() {
			defer close(vipDone)
			if err := a.vip.Run(vipCtx); err != nil && !errors.Is(err, context.Canceled) {
				fail(fmt.Errorf("vip: %w", err))
			}
		})
	}

	var leaveReply chan error
	select {
	case <-ctx.Done():
		a.log.Info("signal received: releasing the VIP, leaving the cluster, draining connections")
	case leaveReply = <-a.leaveReq:
		a.log.Info("leave requested: releasing the VIP, leaving the cluster, draining connections")
	case <-fatal:
		a.log.Error("shutting down after a failure", "err", runErr)
	}

	// 1. The VIP goes first: nobody may be left answering for it while leadership moves.
	stopVIP()
	<-vipDone
	// 2. Leave the cluster gracefully (leadership transfer first) so a peer takes the VIP within milliseconds.
	if a.cluster != nil {
		leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.handOver(leaveCtx)
		leaveErr := a.cluster.Leave(leaveCtx)
		cancel()
		if leaveErr != nil {
			a.log.Warn("graceful leave failed; stopping anyway", "err", leaveErr)
		}
		if leaveReply != nil {
			leaveReply <- leaveErr
		}
		if err := a.cluster.Shutdown(); err != nil {
			a.log.Warn("cluster shutdown", "err", err)
		}
	}
	// 3. Drain open connections, then stop checks and the admin API.
	stopProxy()
	<-proxyDone
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = admin.Shutdown(shutdownCtx)
	cancel()
	stopBase()
	wg.Wait()
	if a.closeKernel != nil {
		if err := a.closeKernel(); err != nil {
			a.log.Warn("close VIP sockets", "err", err)
		}
	}
	a.log.Info("vipd agent stopped")
	return runErr
}

// handOver transfers leadership to a healthy successor before leaving, so the next VIP holder is a node that
// can serve (raft alone would pick the most up-to-date follower, healthy or not, and that node would have to
// hand over once more). Leave transfers to any peer if this fails.
func (a *Agent) handOver(ctx context.Context) {
	if !a.cluster.IsLeader() {
		return
	}
	next, ok := vip.Successor(vip.NewClusterLeadership(a.cluster, a.cfg.Node).Peers())
	if !ok {
		return
	}
	if err := a.cluster.TransferLeadership(ctx, next.Name); err != nil {
		a.log.Warn("hand leadership to a healthy peer before leaving", "to", next.Name, "err", err)
		return
	}
	a.log.Info("leadership handed over before leaving", "to", next.Name)
}

// Ready is closed once Run has bound its listeners; after that Addrs reports them. Tests and supervisors that
// start an agent on port 0 use it to find the ports.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Addrs returns the proxy's (nil for a witness) and the admin API's listening addresses, once Ready is closed.
func (a *Agent) Addrs() (proxyAddr, adminAddr net.Addr) {
	<-a.ready
	return a.proxyAddr, a.adminAddr
}

// publishMeta keeps this node's gossip metadata (health, VIP held) level with reality, so peers choose a
// healthy leader and `vipd members` is true on every node.
func (a *Agent) publishMeta(ctx context.Context) {
	var healthCh <-chan struct{}
	if a.node != nil {
		ch, cancel := a.node.Subscribe()
		defer cancel()
		healthCh = ch
	}
	ticker := time.NewTicker(250 * time.Millisecond)
	defer ticker.Stop()
	// Republish unchanged metadata now and then: memberlist drops an update whose broadcast times out, and
	// peers would then show a stale VIP holder until the next change.
	const republish = 2 * time.Second
	var last cluster.Meta
	var lastAt time.Time
	for {
		m := a.localMeta()
		if lastAt.IsZero() || m != last || time.Since(lastAt) >= republish {
			a.cluster.UpdateMeta(func(dst *cluster.Meta) {
				dst.Healthy, dst.ListenerUp = m.Healthy, m.ListenerUp
				dst.HealthyBackends, dst.TotalBackends = m.HealthyBackends, m.TotalBackends
				dst.Witness, dst.Priority, dst.VIPHeld = m.Witness, m.Priority, m.VIPHeld
			})
			last, lastAt = m, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-healthCh:
		case <-ticker.C:
		}
	}
}

func (a *Agent) localMeta() cluster.Meta {
	m := cluster.Meta{Witness: a.cfg.Witness, Priority: a.cfg.Priority}
	if a.node != nil {
		st := a.node.Status()
		m.Healthy, m.ListenerUp = st.Healthy, st.ListenerUp
		m.HealthyBackends, m.TotalBackends = st.HealthyBackends, st.TotalBackends
	}
	if a.vip != nil {
		m.VIPHeld = a.vip.Held()
	}
	return m
}
