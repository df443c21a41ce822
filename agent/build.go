package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/internal/pki"
	"github.com/vipd/vipd/vip"
)

// Building the components is the one validation path: each constructor validates its own configuration and
// starts nothing, and flagError names the flag. New, `vipd validate` and reload all come through here.

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
		EncryptFile:      cfg.EncryptFile,
		TLS:              pki.Files{CA: cfg.TLSCAFile, Cert: cfg.TLSCertFile, Key: cfg.TLSKeyFile},
		Insecure:         cfg.Insecure,
		ReapAfter:        cfg.ReapAfter,
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
	metrics := vip.NewMetrics(a.reg) // shared by the Manager and the kernel's ARP/NDP responder
	kernel, err := a.vipKernel(metrics)
	if err != nil {
		return err
	}
	heartbeat := cfg.RaftHeartbeat
	if heartbeat == 0 {
		heartbeat = cluster.DefaultHeartbeat
	}
	ports, unknown := portsOf(a.frontends)
	if cfg.HandoverDrain && !a.noFlows && unknown {
		// A port chosen by the kernel at bind time (-listen :0, tests) is unknown here; the flow rules
		// need every frontend's port.
		a.log.Warn("hand-over drains off (-handover-drain): a frontend listens on port 0")
		a.noFlows = true
	}
	m, err := vip.NewManager(vip.Config{
		VIPs:          a.vips,
		RaftHeartbeat: heartbeat, // vip derives its verification interval and answer window from it
		GARPRefresh:   cfg.GARPRefresh,
		Announce:      cfg.GARP,
		Witness:       cfg.Witness,
		Priority:      cfg.Priority,
		PreemptDelay:  cfg.PreemptDelay,
		OnAcquire:     cfg.OnAcquire.vip(),
		OnRelease:     cfg.OnRelease.vip(),
		HandoverDrain: cfg.HandoverDrain && !a.noFlows,
		Ports:         ports,
		DrainTimeout:  cfg.DrainTimeout,
		HookTimeout:   cfg.HookTimeout,
		Logger:        a.log.With("component", "vip"),
		Metrics:       metrics,
	}, clusterLeadership{a.cluster, cfg.Node}, a.healthSource(), kernel)
	if err != nil {
		if a.closeKernel != nil {
			_ = a.closeKernel()
		}
		return flagError(err, vipFlags)
	}
	a.vip = m
	return nil
}

// vipKernel is the VIP's kernel side: the test's fake, nothing for a witness, a checked stand-in for a dry run,
// or the real netlink and raw sockets on the announcing interface.
func (a *Agent) vipKernel(metrics *vip.Metrics) (vip.Kernel, error) {
	if a.opts.Kernel != nil || a.cfg.Witness {
		return a.opts.Kernel, nil
	}
	iface, err := vip.ResolveInterface(a.cfg.Interface, a.vips)
	if err != nil {
		return nil, flagError(err, vipFlags)
	}
	if a.opts.DryRun {
		if err := vip.CheckLinuxKernel(iface); err != nil {
			return nil, flagError(err, vipFlags)
		}
		return dryRunKernel{}, nil
	}
	log := a.log.With("component", "vip")
	opts := []vip.KernelOption{vip.WithKernelMetrics(metrics)}
	if a.cfg.HandoverDrain {
		opts = append(opts, vip.WithFlowForwarding())
	}
	k, err := vip.NewLinuxKernel(iface, log, opts...)
	if err != nil && a.cfg.HandoverDrain {
		// Without nftables the VIP still works; only planned moves reset connections, as before.
		log.Warn("hand-over drains off (-handover-drain): cannot program the forwarding rules", "err", err)
		a.noFlows = true
		k, err = vip.NewLinuxKernel(iface, log, opts[:1]...)
	}
	if err != nil {
		return nil, flagError(err, vipFlags)
	}
	a.closeKernel = k.Close
	return k, nil
}

// dryRunKernel stands in for the real kernel side in a dry run (`vipd validate`), which never runs the VIP
// manager: every call fails.
type dryRunKernel struct{}

var errDryRun = errors.New("dry run: the VIP kernel side is not opened")

func (dryRunKernel) AddAddr(netip.Prefix) error                              { return errDryRun }
func (dryRunKernel) DelAddr(netip.Prefix) error                              { return errDryRun }
func (dryRunKernel) HasAddr(netip.Prefix) (bool, error)                      { return false, errDryRun }
func (dryRunKernel) Announce(netip.Addr) error                               { return errDryRun }
func (dryRunKernel) Answer(context.Context, []netip.Addr, func() bool) error { return errDryRun }

// portsOf are the ports fes listen on, the flows a hand-over drain keeps; unknown says one listens on a
// port the kernel picks at bind time.
func portsOf(fes []*frontend) (ports []uint16, unknown bool) {
	for _, fe := range fes {
		_, p, err := net.SplitHostPort(fe.spec.listen)
		n, perr := strconv.ParseUint(p, 10, 16)
		switch {
		case err != nil || perr != nil || n == 0:
			unknown = true
		case !slices.Contains(ports, uint16(n)):
			ports = append(ports, uint16(n))
		}
	}
	return ports, unknown
}
