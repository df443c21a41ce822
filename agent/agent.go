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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

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
	// Build labels vipd_build_info; its Version should equal Version.
	Build BuildInfo
	// Kernel replaces the real netlink/ARP side of the VIP; tests pass an in-memory fake. Nil means the real
	// kernel on the configured interface.
	Kernel vip.Kernel
	// DryRun builds and validates everything as for a start, but opens no socket and changes nothing on the
	// host (the VIP side is only checked): `vipd validate`. A dry-run Agent must not be Run.
	DryRun bool
	// Reload re-reads the configuration the agent was started with (the -config file and the flags) for
	// SIGHUP and `vipd reload`; nil refuses reloads.
	Reload func() (Config, error)
	// LogLevel, if set, is the level of Logger's handler: a reload that changes -log-level sets it.
	LogLevel *slog.LevelVar
}

// Agent is one running vipd node. Build it with New, run it with Run.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	opts Options
	reg  *prometheus.Registry

	// frontends are the running frontends in configuration order (none for a witness); a reload replaces
	// the slice under feMu. node is their combined health, the VIP's gate.
	feMu          sync.RWMutex
	frontends     []*frontend
	node          *health.Node
	healthMetrics *health.Metrics
	proxyMetrics  *proxy.Metrics
	cluster       *cluster.Cluster
	vip           *vip.Manager
	vips          []netip.Prefix
	// closeKernel closes the netlink handle of the real VIP kernel side, if any.
	closeKernel func() error
	// noFlows is set once the kernel side could not program hand-over forwarding (no nftables). A negative,
	// so that the zero value leaves -handover-drain as configured.
	noFlows bool
	// drainDone is the DrainDone this node last gossiped while not draining, gossiped again while a drain is
	// being recorded (vip.DrainPending).
	drainDone atomic.Uint64
	// adminToken (from -http-token-file) authorises admin API writes; adminLoopback says the API only listens
	// on loopback, where writes need no token.
	adminToken    atomic.Pointer[string]
	adminLoopback bool
	// live is the configuration in force: cfg as started, then each reload's. cfg itself never changes after
	// New (handlers read it without locks); live is what a reload compares against and replaces.
	live atomic.Pointer[Config]

	// leaveReq carries POST /v1/leave to Run, reloadReq SIGHUP and POST /v1/reload; the reply channel reports
	// the outcome. Run serves both, so a reload never races the start or the shutdown.
	leaveReq, reloadReq chan chan error
	// ready is closed once the listeners are bound; proxyAddr (the first frontend's) and adminAddr are set
	// before.
	ready                chan struct{}
	proxyAddr, adminAddr net.Addr
}

// New validates cfg and builds the components, each of which validates its own settings and checks what can
// be checked before listening (certificate files, the VIP interface, capabilities). It starts nothing: a
// failure here leaves nothing behind, and the error (errors.Is ErrInvalid for bad input) names the flag.
func New(cfg Config, opts Options) (*Agent, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:       cfg,
		log:       log,
		opts:      opts,
		reg:       prometheus.NewRegistry(),
		leaveReq:  make(chan chan error),
		reloadReq: make(chan chan error),
		ready:     make(chan struct{}),
	}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(a.reg, opts.Build)
	a.adminLoopback = isLoopbackListen(cfg.HTTPAddr)
	if cfg.HTTPTokenFile != "" {
		tok, err := readTokenFile(cfg.HTTPTokenFile)
		if err != nil {
			return nil, err
		}
		a.adminToken.Store(&tok)
	}
	a.live.Store(&cfg)

	a.healthMetrics, a.proxyMetrics = health.NewMetrics(a.reg), proxy.NewMetrics(a.reg)
	var specs []frontendSpec
	if !cfg.Witness {
		var err error
		if specs, err = cfg.frontendSpecs(); err != nil {
			return nil, err
		}
		a.node = health.NewNode(health.WithMetrics(a.healthMetrics))
		for _, s := range specs {
			fe, err := a.buildFrontend(s, cfg, len(specs))
			if err != nil {
				return nil, err
			}
			a.frontends = append(a.frontends, fe)
		}
	}
	if cfg.ClusterEnabled() {
		if err := a.buildCluster(); err != nil {
			return nil, err
		}
		a.reg.MustRegister(newClusterCollector(a.cluster))
	}
	if err := cfg.checkHost(specs, interfaceAddrs); err != nil {
		return nil, err
	}
	if len(cfg.VIPs) > 0 || cfg.Witness {
		if err := a.buildVIP(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// running is what start brought up and shutdown takes down, in the opposite order.
type running struct {
	g     *errgroup.Group
	fatal context.Context // done when a component failed; context.Cause says which
	fail  context.CancelCauseFunc

	// base outlives every component until the last step of shutdown; the frontends' contexts derive from it.
	base      context.Context
	stopBase  context.CancelFunc
	stopVIP   context.CancelFunc // VIP manager and metadata publisher
	admin     *http.Server
	vipDone   chan struct{}
	clusterUp bool
}

// run starts fn in the agent's group; an error it returns fails the agent (Run shuts down).
func (rt *running) run(fn func() error) {
	rt.g.Go(func() error {
		err := fn()
		if err != nil {
			rt.fail(err)
		}
		return err
	})
}

// Run starts every component and blocks until ctx is done (SIGTERM), `vipd leave` is called, or a component
// fails; meanwhile it applies reloads. It then shuts down in the order docs/ARCHITECTURE.md gives (release
// the VIP, hand leadership on and leave, drain the proxies, stop checks and the admin API). It returns nil
// after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	if a.opts.DryRun {
		return errors.New("a dry-run agent cannot run: build it without Options.DryRun")
	}
	rt, err := a.start(ctx)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			a.log.Info("signal received: releasing the VIP, leaving the cluster, draining connections")
			return a.shutdown(rt, nil)
		case leaveReply := <-a.leaveReq:
			a.log.Info("leave requested: releasing the VIP, leaving the cluster, draining connections")
			return a.shutdown(rt, leaveReply)
		case <-rt.fatal.Done():
			a.log.Error("shutting down after a failure", "err", context.Cause(rt.fatal))
			return a.shutdown(rt, nil)
		case reply := <-a.reloadReq:
			reply <- a.reload(rt)
		}
	}
}

// Reload re-reads the configuration and applies it to the running agent (SIGHUP, `vipd reload`): entirely, or
// not at all with an error that says why. It returns when the reload is done, or ctx ends first.
func (a *Agent) Reload(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case a.reloadReq <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// start binds every listener (so a port in use fails the start before anything runs), then starts the
// frontends, the admin API, the cluster and the VIP manager. Components run on contexts of their own, not on
// the errgroup's: a failure only signals rt.fatal, and shutdown still stops them one by one in order.
func (a *Agent) start(ctx context.Context) (*running, error) {
	if a.cfg.Nice != 0 {
		if err := sched.SetNice(a.cfg.Nice); err != nil {
			a.log.Warn("cannot raise scheduling priority; Raft heartbeats may be late when the CPU is saturated (grant CAP_SYS_NICE or set -nice 0)",
				"nice", a.cfg.Nice, "err", err)
		}
	}
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, fe := range a.frontends {
		ln, err := fe.listen(ctx)
		if err != nil {
			closeAll()
			return nil, err
		}
		lns = append(lns, ln)
	}
	adminLn, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("-http-addr %s: %w", a.cfg.HTTPAddr, err)
	}
	if len(lns) > 0 {
		a.proxyAddr = lns[0].Addr()
	}
	a.adminAddr = adminLn.Addr()
	close(a.ready)
	a.log.Info("vipd agent starting", "version", a.opts.Version, "frontends", len(a.frontends),
		"cluster", a.cfg.ClusterEnabled(), "vips", a.cfg.VIPs, "admin", adminLn.Addr().String())

	fatal, fail := context.WithCancelCause(context.Background())
	rt := &running{g: new(errgroup.Group), fatal: fatal, fail: fail, vipDone: make(chan struct{})}
	rt.base, rt.stopBase = context.WithCancel(context.WithoutCancel(ctx))
	vipCtx, stopVIP := context.WithCancel(rt.base)
	rt.stopVIP = stopVIP

	for i, fe := range a.frontends {
		a.launch(rt, fe, lns[i])
	}
	a.warnAdminExposure()
	rt.admin = a.newAdminServer()
	rt.run(func() error {
		if err := rt.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin API on %s: %w", a.cfg.HTTPAddr, err)
		}
		return nil
	})

	if a.cluster != nil {
		if err := a.cluster.Start(rt.base); err != nil {
			fail(fmt.Errorf("start cluster: %w", err))
			close(rt.vipDone)
			return rt, nil
		}
		rt.clusterUp = true
		rt.run(func() error { a.publishMeta(vipCtx); return nil })
	}
	if a.vip == nil || a.cluster == nil {
		close(rt.vipDone)
		return rt, nil
	}
	rt.run(func() error {
		defer close(rt.vipDone)
		if err := a.vip.Run(vipCtx); err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("vip: %w", err)
		}
		return nil
	})
	return rt, nil
}

// shutdown takes the node down in the order that keeps the VIP safe and clients served, and returns the first
// component failure, if any.
func (a *Agent) shutdown(rt *running, leaveReply chan error) error {
	start := time.Now()
	// 1. The VIP goes first: nobody may be left answering for it while leadership moves. A holder with
	// hand-over drains keeps serving its connections, which its successor forwards here.
	drained := a.handoverVIP(rt)
	// 2. Hand leadership to a healthy successor (so a peer takes the VIP within milliseconds), wait for the
	// drain, and leave the cluster. A cluster that never started has nothing to leave.
	if rt.clusterUp {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		a.handOver(ctx)
		cancel()
	}
	if leaveReply != nil && !isClosed(drained) {
		// The drain may last until -drain-timeout (minutes), longer than any admin API request may: `vipd
		// leave` learns now that the VIP is handed over and the node leaves once its drain is over.
		leaveReply <- errLeaveDraining
		leaveReply = nil
	}
	a.waitDrain(drained)
	rt.stopVIP()
	<-rt.vipDone
	if rt.clusterUp {
		leaveCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	} else if leaveReply != nil {
		leaveReply <- nil
	}
	// 3. Drain open connections: every frontend at once, for what is left of -drain-timeout.
	fes := a.frontendList()
	if left := a.cfg.DrainTimeout - time.Since(start); left < a.cfg.DrainTimeout {
		for _, fe := range fes {
			pc, err := proxySettings(fe.spec, *a.live.Load(), len(fes))
			if err == nil {
				pc.DrainTimeout = max(left, time.Millisecond)
				err = fe.proxy.SetConfig(pc)
			}
			if err != nil {
				a.log.Warn("shorten the proxy drain", "frontend", fe.spec.name, "err", err)
			}
		}
	}
	for _, fe := range fes {
		fe.stopProxy()
	}
	for _, fe := range fes {
		<-fe.served
	}
	// 4. Stop the health checks and the admin API.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = rt.admin.Shutdown(shutdownCtx)
	cancel()
	rt.stopBase()
	_ = rt.g.Wait() // every component has ended; the first failure is rt.fatal's cause
	if a.closeKernel != nil {
		if err := a.closeKernel(); err != nil {
			a.log.Warn("close VIP netlink handle", "err", err)
		}
	}
	a.log.Info("vipd agent stopped")
	var err error
	if rt.fatal.Err() != nil {
		err = context.Cause(rt.fatal)
	}
	rt.fail(nil)
	return err
}

// Summary describes what the agent will run, one line per part, for `vipd validate`.
func (a *Agent) Summary() []string {
	var out []string
	for _, fe := range a.frontendList() {
		out = append(out, fmt.Sprintf("frontend %s: listen %s, %d backends, %s check", fe.spec.name, fe.spec.listen, len(fe.spec.backends), fe.spec.check.Type))
	}
	if a.cfg.Witness {
		out = append(out, "witness: votes in Raft, no proxy, never holds the VIP")
	}
	switch {
	case a.cluster == nil:
		out = append(out, "no cluster: a proxy alone")
	case a.cfg.Dev:
		out = append(out, fmt.Sprintf("cluster: -dev, a single node %s", a.cfg.Node))
	default:
		out = append(out, fmt.Sprintf("cluster: node %s, bind %s, gossip :%d, raft :%d, data in %s", a.cfg.Node, a.cfg.Bind, a.cfg.GossipPort, a.cfg.RaftPort, a.cfg.DataDir))
	}
	if a.cluster != nil {
		out = append(out, fmt.Sprintf("security: %s", a.cluster.Status().Security))
	}
	if len(a.vips) > 0 {
		out = append(out, fmt.Sprintf("VIP: %v", a.cfg.VIPs))
	}
	out = append(out, "admin API: "+a.cfg.HTTPAddr)
	return out
}

// handoverVIP releases the VIP for good before the node leaves (vip.Manager.Handover): with hand-over drains
// the holder keeps its connections, and the returned channel is closed when its drain ends.
func (a *Agent) handoverVIP(rt *running) <-chan struct{} {
	if a.vip == nil {
		return nil
	}
	select {
	case <-rt.vipDone: // never started, or failed
		return nil
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done, err := a.vip.Handover(ctx)
	if err != nil {
		a.log.Warn("hand the VIP over", "err", err)
		return nil
	}
	return done
}

// errLeaveDraining is the answer to a leave request while the node drains: not a failure; the VIP is handed
// over, and the node leaves the cluster and exits once its connections are done (at most -drain-timeout).
var errLeaveDraining = errors.New("draining the connections through the VIP before leaving")

// isClosed reports whether c is closed; a nil channel (nothing to wait for) counts as closed.
func isClosed(c <-chan struct{}) bool {
	if c == nil {
		return true
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// waitDrain waits until a hand-over drain is over (the Manager ends it when no connection is left, or at
// -drain-timeout).
func (a *Agent) waitDrain(drained <-chan struct{}) {
	if drained == nil {
		return
	}
	select {
	case <-drained:
		return
	default:
	}
	a.log.Info("waiting for the connections through the VIP to finish (hand-over drain)", "timeout", a.cfg.DrainTimeout)
	select {
	case <-drained:
	case <-time.After(a.cfg.DrainTimeout + time.Second): // the Manager ends it at the timeout; a margin
	}
}

// Ready is closed once Run has bound its listeners; after that Addrs reports them. Tests and supervisors that
// start an agent on port 0 use it to find the ports.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Addrs returns the proxy's (nil for a witness) and the admin API's listening addresses, once Ready is closed.
func (a *Agent) Addrs() (proxyAddr, adminAddr net.Addr) {
	<-a.ready
	return a.proxyAddr, a.adminAddr
}
