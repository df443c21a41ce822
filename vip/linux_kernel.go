//go:build linux

package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/vip/flowfwd"
)

// LoLabel is the IPv4 address label of VIPs on lo; it marks them for Cleanup (netlink requires a
// label to start with the link name).
const LoLabel = "lo:vip"

var (
	_ Kernel  = (*LinuxKernel)(nil)
	_ Cleaner = (*LinuxKernel)(nil)
)

// LinuxKernel is the real Kernel: VIPs as host prefixes on lo via netlink; on the announcing interface,
// ARP answered on a kernel-filtered packet socket (mdlayher/packet) and announced with mdlayher/arp,
// neighbour solicitations answered on a kernel-filtered ICMPv6 socket and announced with mdlayher/ndp.
//
// Sockets are opened in the network namespace of the calling thread: the netlink socket in
// NewLinuxKernel, the raw sockets synchronously inside Announce and Answer (Answer reopens a failed
// socket from its own goroutine too; its reader goroutines only use sockets already open). Safe for
// concurrent use.
type LinuxKernel struct {
	ifi *net.Interface
	mac net.HardwareAddr
	log *slog.Logger

	metrics  *Metrics // responder counters; nil records nothing
	noFilter bool     // tests only: no kernel filter on the ARP socket, to exercise the userspace checks
	// replyPerRequester and replyGlobal are the reply limits (ratelimit.go); tests lower them.
	replyPerRequester, replyGlobal int
	// flows is the hand-over forwarding table (linux_forward.go), opened when wantFlows.
	wantFlows bool
	flows     *flowfwd.Table

	mu   sync.Mutex // serialises netlink requests on nl and diag
	nl   *netlink.Handle
	diag *nl.NetlinkSocket // sock_diag, for SOCK_DESTROY (linux_flows.go)
	lo   netlink.Link
}

// KernelOption configures a LinuxKernel.
type KernelOption func(*LinuxKernel)

// WithKernelMetrics makes the ARP/NDP responder count frames by result and socket restarts in m
// (vipd_arp_frames_total, vipd_ndp_messages_total, vipd_arp_responder_restarts_total). Pass the same
// Metrics as the Manager's: they are registered once.
func WithKernelMetrics(m *Metrics) KernelOption {
	return func(k *LinuxKernel) { k.metrics = m }
}

// NewLinuxKernel checks everything the VIP needs at start — CAP_NET_ADMIN and CAP_NET_RAW, the
// interface exists, is up and has an Ethernet address, arp_ignore (set it to 1 and arp_announce to 2
// if possible) — and opens a netlink handle. It starts no goroutine; Close releases the handle.
func NewLinuxKernel(ifaceName string, logger *slog.Logger, opts ...KernelOption) (*LinuxKernel, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := CheckCapabilities(); err != nil {
		return nil, err
	}
	if ifaceName == "" {
		return nil, fmt.Errorf("%w: -interface is empty (use ResolveInterface to choose one)", ErrInterface)
	}
	ifi, err := net.InterfaceByName(ifaceName)
	if err != nil {
		return nil, fmt.Errorf("%w: -interface %s: %w", ErrInterface, ifaceName, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("%w: -interface %s is down: bring it up (ip link set %s up)", ErrInterface, ifaceName, ifaceName)
	}
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("%w: -interface %s has no Ethernet address (%q) to answer ARP with",
			ErrInterface, ifaceName, ifi.HardwareAddr)
	}
	if err := ensureARPSysctls(ifaceName, logger.Warn); err != nil {
		return nil, err
	}
	// NETLINK_INET_DIAG too, opened now in this network namespace, for counting drained connections.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_INET_DIAG)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("find lo: %w", err)
	}
	diag, err := nl.Subscribe(unix.NETLINK_INET_DIAG)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink sock_diag: %w", err)
	}
	if err := diag.SetReceiveTimeout(&unix.Timeval{Sec: 5}); err != nil {
		h.Close()
		diag.Close()
		return nil, fmt.Errorf("netlink sock_diag timeout: %w", err)
	}
	k := &LinuxKernel{ifi: ifi, mac: ifi.HardwareAddr, log: logger, nl: h, diag: diag, lo: lo,
		replyPerRequester: replyPerRequester, replyGlobal: replyGlobal}
	for _, o := range opts {
		o(k)
	}
	if k.wantFlows {
		if err := k.openFlows(); err != nil {
			h.Close()
			diag.Close()
			return nil, err
		}
	}
	return k, nil
}

// Close removes the hand-over forwarding table, if any, and releases the netlink handle.
func (k *LinuxKernel) Close() error {
	var err error
	if k.flows != nil {
		err = k.flows.Close()
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.nl.Close()
	k.diag.Close()
	return err
}

// HardwareAddr is the MAC address the VIP is answered and announced with.
func (k *LinuxKernel) HardwareAddr() net.HardwareAddr { return k.mac }

func hostAddr(ip netip.Addr) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(ip.BitLen(), ip.BitLen())}}
	if ip.Is4() {
		a.Label = LoLabel
	} else {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// AddAddr adds p's address to lo as a host prefix; already present is success.
func (k *LinuxKernel) AddAddr(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.nl.AddrAdd(k.lo, hostAddr(p.Addr())); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add VIP %s to lo: %w", p.Addr(), err)
	}
	return nil
}

// DelAddr removes p's address from lo; already absent is success.
func (k *LinuxKernel) DelAddr(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.nl.AddrDel(k.lo, hostAddr(p.Addr())); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("remove VIP %s from lo: %w", p.Addr(), err)
	}
	return nil
}

// HasAddr reports whether p's address is on lo (with any prefix length).
func (k *LinuxKernel) HasAddr(p netip.Prefix) (bool, error) {
	addrs, err := k.loAddrs(p.Addr())
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == p.Addr() {
			return true, nil
		}
	}
	return false, nil
}

func (k *LinuxKernel) loAddrs(ip netip.Addr) ([]netlink.Addr, error) {
	family := netlink.FAMILY_V6
	if ip.Is4() {
		family = netlink.FAMILY_V4
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	addrs, err := k.nl.AddrList(k.lo, family)
	if err != nil {
		return nil, fmt.Errorf("list addresses of lo: %w", err)
	}
	return addrs, nil
}

// Cleanup removes every IPv4 address labelled lo:vip — VIPs a crashed earlier run left behind, even
// ones no longer configured. IPv6 addresses carry no label: the Manager removes its configured IPv6
// VIPs itself.
func (k *LinuxKernel) Cleanup() error {
	addrs, err := k.loAddrs(netip.IPv4Unspecified())
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range addrs {
		if a.Label != LoLabel {
			continue
		}
		ip, _ := netip.AddrFromSlice(a.IP)
		k.log.Info("removing stale VIP left on lo", "vip", ip.Unmap())
		if err := k.DelAddr(netip.PrefixFrom(ip.Unmap(), 32)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Announce sends a gratuitous ARP (request and reply) for an IPv4 ip or an unsolicited neighbour
// advertisement with Override for an IPv6 ip, from the interface MAC.
func (k *LinuxKernel) Announce(ip netip.Addr) error {
	if ip.Is4() {
		return k.announceARP(ip)
	}
	return k.announceNDP(ip)
}

// Answer answers ARP requests (IPv4) and neighbour solicitations (IPv6) for ips with the interface
// MAC until ctx is done; it then closes its sockets and returns nil after its goroutines have ended.
//
// No frame can stop it: each one is judged by DecideARP or DecideNDP, dropped frames are counted by
// reason, and a socket error reopens the socket (at once, then with a back-off up to 1 s). Kernel filters
// keep floods of unrelated or malformed frames out of the process. Replies are rate-limited per requester
// and in total (replyPerRequester, replyGlobal), and warnings to one a minute per reason and MAC.
// Answer returns an error only when it cannot open its sockets in the first place.
func (k *LinuxKernel) Answer(ctx context.Context, ips []netip.Addr, allow func() bool) error {
	// The sockets are opened, and reopened, in this goroutine (and network namespace).
	return k.newResponder(ips, allow).run(ctx)
}
