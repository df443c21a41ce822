//go:build linux

package flowfwd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Table is vipd's own nftables tables ("vipd" in families ip and ip6), programmed through netlink.
//
// It works in the network namespace of the thread that called New, whatever thread later calls its
// methods: its netlink sockets are opened there, by New, without entering any namespace (so CAP_NET_ADMIN
// is all it needs, as in a container). Every method is safe for concurrent use: calls are serialised, each change is one netlink batch
// (one nftables transaction, so packets see the old rules or the new ones, never a mix or none), and a
// call that would change nothing sends nothing. A failed call leaves the kernel and the Table as they were.
type Table struct {
	log    *slog.Logger
	ctMark uint32

	mu     sync.Mutex      // serialises calls; guards everything below
	nft    *nftables.Conn  // lasting: one socket, opened by New
	rtnl   *netlink.Handle // interface and address lookups
	closed bool
	marks  selector
	fwd    [2]*target // by family: [0] ip, [1] ip6
	base   Stats      // counts of rule generations already replaced
}

// New opens netlink in the caller's network namespace and removes the tables a crashed earlier run may
// have left (the node must not forward anything it has not been told to now). It installs nothing and
// starts no goroutine; Close releases it. It fails if nftables is missing or CAP_NET_ADMIN is not held.
func New(cfg Config, log *slog.Logger) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Both sockets are opened by this thread, in its namespace: no setns, which would need CAP_SYS_ADMIN.
	nft, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return nil, fmt.Errorf("flowfwd: open nftables netlink: %w", err)
	}
	rtnl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		_ = nft.CloseLasting()
		return nil, fmt.Errorf("flowfwd: open rtnetlink: %w", err)
	}
	t := &Table{log: log, ctMark: cfg.ctMark(), nft: nft, rtnl: rtnl}
	if err := t.removeStale(); err != nil {
		t.release()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("%w (programming nftables needs CAP_NET_ADMIN)", err)
		}
		return nil, err
	}
	return t, nil
}

func (t *Table) removeStale() error {
	c := t.nft
	for _, f := range families() {
		if ok, err := tableExists(c, f); err != nil {
			return err
		} else if ok {
			t.log.Warn("removing stale nftables table left by an earlier run", "table", fmt.Sprintf("%s %s", f, TableName))
		}
	}
	if err := t.replace(c, selector{}, [2]*target{}); err != nil {
		return fmt.Errorf("flowfwd: remove stale tables (is another vipd running in this network namespace?): %w", err)
	}
	return nil
}

// Mark installs, replacing any earlier Mark, the rules that record in conntrack that a flow to one of vips
// on one of ports started with a SYN here, so it is local. Call it before the node takes any traffic for
// the VIPs and keep it for as long as the node may hold them: a flow accepted before its SYN could be marked
// is still recognised as local by the socket lookup, except one completed through a SYN cookie.
func (t *Table) Mark(vips []netip.Addr, ports []uint16) error {
	sel, err := newSelector("Mark", vips, ports)
	if err != nil {
		return err
	}
	return t.call(func(c *nftables.Conn) error { return t.apply(c, sel, t.fwd) })
}

// Forward installs, replacing any earlier Forward of peer's address family, the rules that hand every
// TCP segment to one of vips on one of ports that is not a SYN and belongs to no flow this node knows to
// peer, through iface, at layer 2 with the destination unchanged, and drop it here. peer must be a
// neighbour on iface that has the VIPs on its loopback (the draining old holder); vips must all be of
// peer's family, so dual stack takes one call per family. iface is resolved to its index now: call
// Forward again if the interface is re-created. Mark should have been called first (see Mark).
func (t *Table) Forward(peer netip.Addr, iface string, vips []netip.Addr, ports []uint16) error {
	tg, err := checkForward(peer, iface, vips, ports)
	if err != nil {
		return err
	}
	return t.call(func(c *nftables.Conn) error {
		link, err := t.rtnl.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("%w: Forward: iface %s: %w", ErrInvalidArgument, iface, err)
		}
		tg.index = link.Attrs().Index
		if local, err := t.isLocal(tg.peer); err != nil {
			return err
		} else if local {
			return fmt.Errorf("%w: Forward: peer %s is an address of this node: pass the draining node's address",
				ErrInvalidArgument, tg.peer)
		}
		fwd := t.fwd
		fwd[familyIndex(tg.peer.Is4())] = tg
		return t.apply(c, t.marks, fwd)
	})
}

// StopForward removes every forward rule (both families) and keeps the mark rules. Segments of the peer's
// flows then reach this node's stack, which answers them with RST.
func (t *Table) StopForward() error {
	return t.call(func(c *nftables.Conn) error { return t.apply(c, t.marks, [2]*target{}) })
}

// Stats reads the rules' counters (see Stats).
func (t *Table) Stats() (Stats, error) {
	var s Stats
	err := t.call(func(c *nftables.Conn) error {
		now, err := readCounters(c)
		s = t.base.add(now)
		return err
	})
	return s, err
}

// Close removes both tables and releases netlink. It is idempotent; every other method fails with ErrClosed
// afterwards. The conntrack marks already set stay on their flows (they mean nothing without the rules).
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	defer t.release()
	if err := t.replace(t.nft, selector{}, [2]*target{}); err != nil {
		return fmt.Errorf("flowfwd: remove tables: %w", err)
	}
	if !t.marks.empty() || t.fwd != [2]*target{} {
		t.log.Info("hand-over rules removed")
	}
	return nil
}

// call runs f under the lock.
func (t *Table) call(f func(c *nftables.Conn) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	return f(t.nft)
}

func (t *Table) release() {
	t.closed = true
	_ = t.nft.CloseLasting()
	t.rtnl.Close()
}

func familyIndex(is4 bool) int {
	if is4 {
		return 0
	}
	return 1
}

// apply makes marks and fwd the installed state, unless they already are and the kernel still has exactly
// the rules they need (someone may have deleted them: a repeated call puts them back). The check compares
// which of vipd's rules exist, by their tags, not their contents or the sets' elements.
func (t *Table) apply(c *nftables.Conn, marks selector, fwd [2]*target) error {
	if marks.equal(t.marks) && fwd[0].equal(t.fwd[0]) && fwd[1].equal(t.fwd[1]) {
		ok, err := t.inSync(c)
		if err != nil || ok {
			return err
		}
		t.log.Warn("hand-over rules were changed outside vipd: putting them back")
	}
	before, err := readCounters(c)
	if err != nil {
		return err
	}
	if err := t.replace(c, marks, fwd); err != nil {
		return err
	}
	t.base = t.base.add(before)
	t.logChange(marks, fwd)
	t.marks, t.fwd = marks, fwd
	return nil
}

func (t *Table) logChange(marks selector, fwd [2]*target) {
	if !marks.equal(t.marks) {
		t.log.Info("marking flows that start with a SYN as local", "vips", marks.vips, "ports", marks.ports)
	}
	for i, f := range fwd {
		switch {
		case f.equal(t.fwd[i]):
		case f == nil:
			t.log.Info("stopped forwarding unknown flows", "family", families()[i].String(), "peer", t.fwd[i].peer)
		default:
			t.log.Info("forwarding unknown flows to the draining peer", "peer", f.peer, "interface", f.iface,
				"vips", f.sel.vips, "ports", f.sel.ports)
		}
	}
}

// replace installs exactly marks and fwd in one batch on c.
//
// Building the batch cannot fail for the fixed expressions and validated elements this package queues (the
// tests build every variant). Should it fail anyway, the messages already queued stay on c and go out with
// the next batch, which begins by deleting both tables again: the kernel still ends with exactly that
// batch's rules, or that batch fails whole.
func (t *Table) replace(c *nftables.Conn, marks selector, fwd [2]*target) error {
	for i, f := range families() {
		if err := f.queueReplace(c, t.ctMark, marks.of(f.is4), fwd[i]); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("flowfwd: program nftables: %w", err)
	}
	return nil
}

func tableExists(c *nftables.Conn, f family) (bool, error) {
	tables, err := c.ListTablesOfFamily(f.nft)
	if err != nil {
		return false, fmt.Errorf("flowfwd: list %s tables: %w", f, err)
	}
	return slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == TableName }), nil
}

// rules returns the rules of f's chain, or none if f's table does not exist.
func rules(c *nftables.Conn, f family) ([]*nftables.Rule, error) {
	ok, err := tableExists(c, f)
	if err != nil || !ok {
		return nil, err
	}
	rs, err := c.GetRules(f.table(), f.chain())
	if err != nil {
		return nil, fmt.Errorf("flowfwd: list rules of %s %s: %w", f, TableName, err)
	}
	return rs, nil
}

// inSync reports whether the kernel holds exactly the rules t.marks and t.fwd need.
func (t *Table) inSync(c *nftables.Conn) (bool, error) {
	for i, f := range families() {
		var want []string
		if !t.marks.of(f.is4).empty() {
			want = append(want, tagMark)
		}
		if t.fwd[i] != nil {
			want = append(want, tagLocal, tagForward)
		}
		rs, err := rules(c, f)
		if err != nil {
			return false, err
		}
		var got []string
		for _, r := range rs {
			got = append(got, string(r.UserData))
		}
		if !slices.Equal(got, want) {
			return false, nil
		}
	}
	return true, nil
}

// readCounters sums the counters of the rules installed now.
func readCounters(c *nftables.Conn) (Stats, error) {
	var s Stats
	for _, f := range families() {
		rs, err := rules(c, f)
		if err != nil {
			return Stats{}, err
		}
		for _, r := range rs {
			ctr := counterOf(r)
			switch {
			case ctr == nil:
			case bytes.Equal(r.UserData, []byte(tagMark)):
				s.MarkedSYNs += ctr.Packets
			case bytes.Equal(r.UserData, []byte(tagForward)):
				s.Forwarded += ctr.Packets
				s.ForwardedBytes += ctr.Bytes
			}
		}
	}
	return s, nil
}

func counterOf(r *nftables.Rule) *expr.Counter {
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c
		}
	}
	return nil
}

func (s Stats) add(o Stats) Stats {
	return Stats{
		MarkedSYNs:     s.MarkedSYNs + o.MarkedSYNs,
		Forwarded:      s.Forwarded + o.Forwarded,
		ForwardedBytes: s.ForwardedBytes + o.ForwardedBytes,
	}
}

// isLocal reports whether ip is configured on any interface of this namespace.
func (t *Table) isLocal(ip netip.Addr) (bool, error) {
	family := netlink.FAMILY_V6
	if ip.Is4() {
		family = netlink.FAMILY_V4
	}
	addrs, err := t.rtnl.AddrList(nil, family)
	if err != nil {
		return false, fmt.Errorf("flowfwd: list this node's addresses: %w", err)
	}
	for _, a := range addrs {
		if x, ok := netip.AddrFromSlice(a.IP); ok && x.Unmap() == ip {
			return true, nil
		}
	}
	return false, nil
}
