//go:build linux

package flowfwd_test

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip/flowfwd"
)

// What Table programs, read back through netlink in a namespace with one veth pair.

type inspector struct {
	t *testing.T
	c *nftables.Conn
}

func inspect(t *testing.T, n *ns) *inspector {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		t.Fatalf("nftables in %s: %v", n.name, err)
	}
	return &inspector{t: t, c: c}
}

func (in *inspector) table(f nftables.TableFamily) *nftables.Table {
	return &nftables.Table{Name: flowfwd.TableName, Family: f}
}

// rules returns the tags of the rules in vipd's table of family f, in order; nil if there is no table.
func (in *inspector) rules(f nftables.TableFamily) (tags []string, handles []uint64) {
	in.t.Helper()
	tables, err := in.c.ListTablesOfFamily(f)
	if err != nil {
		in.t.Fatalf("list tables: %v", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == flowfwd.TableName }) {
		return nil, nil
	}
	rs, err := in.c.GetRules(in.table(f), &nftables.Chain{Name: "prerouting"})
	if err != nil {
		in.t.Fatalf("list rules: %v", err)
	}
	tags = []string{} // the table exists
	for _, r := range rs {
		tags = append(tags, string(r.UserData))
		handles = append(handles, r.Handle)
	}
	return tags, handles
}

func (in *inspector) want(f nftables.TableFamily, want ...string) []uint64 {
	in.t.Helper()
	got, handles := in.rules(f)
	if want == nil && got != nil {
		in.t.Fatalf("family %d: rules %q, want no table", f, got)
	}
	if !slices.Equal(got, want) {
		in.t.Fatalf("family %d: rules %q, want %q", f, got, want)
	}
	return handles
}

const (
	ip4 = nftables.TableFamilyIPv4
	ip6 = nftables.TableFamilyIPv6
)

func TestTableLifecycle(t *testing.T) {
	requireNetns(t)
	n := newNS(t, "t")
	run(t, "ip", "-n", n.name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	run(t, "ip", "-n", n.name, "link", "set", "d1", "up")
	run(t, "ip", "-n", n.name, "addr", "add", "10.78.0.2/24", "dev", "d0")
	run(t, "ip", "-n", n.name, "addr", "add", "fd78::2/64", "dev", "d0", "nodad")
	run(t, "ip", "-n", n.name, "link", "set", "d0", "up")
	in := inspect(t, n)

	// A table a crashed earlier run left behind.
	stale := in.c.AddTable(in.table(ip4))
	in.c.AddChain(&nftables.Chain{Name: "prerouting", Table: stale})
	if err := in.c.Flush(); err != nil {
		t.Fatalf("add stale table: %v", err)
	}
	logs := testutil.NewLogSink(t)
	var tbl *flowfwd.Table
	var err error
	n.do(t, func() { tbl, err = flowfwd.New(flowfwd.Config{}, logs.Logger(0)) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tbl.Close() })
	in.want(ip4)
	in.want(ip6)
	if !logs.Contains("removing stale nftables table") {
		t.Error("New did not log the stale table it removed")
	}

	v4, v6 := netip.MustParseAddr("10.78.0.50"), netip.MustParseAddr("fd78::50")
	peer4, peer6 := netip.MustParseAddr("10.78.0.1"), netip.MustParseAddr("fd78::1")
	ports := []uint16{6443, 443}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	must("Mark v4", tbl.Mark([]netip.Addr{v4}, ports))
	in.want(ip4, "vipd:mark")
	in.want(ip6)
	must("Mark dual stack", tbl.Mark([]netip.Addr{v6, v4}, ports))
	in.want(ip4, "vipd:mark")
	in.want(ip6, "vipd:mark")

	must("Forward v4", tbl.Forward(peer4, "d0", []netip.Addr{v4}, ports))
	h := in.want(ip4, "vipd:mark", "vipd:local", "vipd:forward")
	in.want(ip6, "vipd:mark")

	// Idempotent: the same call (in another order) sends nothing, so the rules keep their handles.
	must("Forward v4 again", tbl.Forward(peer4, "d0", []netip.Addr{v4}, []uint16{443, 6443, 443}))
	if h2 := in.want(ip4, "vipd:mark", "vipd:local", "vipd:forward"); !slices.Equal(h, h2) {
		t.Fatalf("a repeated Forward replaced the rules (handles %v, then %v)", h, h2)
	}

	// Level-triggered: rules someone removed come back with the next call.
	in.c.DelTable(in.table(ip4))
	must("delete table behind vipd's back", in.c.Flush())
	in.want(ip4)
	must("Forward v4 after the deletion", tbl.Forward(peer4, "d0", []netip.Addr{v4}, ports))
	in.want(ip4, "vipd:mark", "vipd:local", "vipd:forward")
	if !logs.Contains("changed outside vipd") {
		t.Error("the repair was not logged")
	}

	must("Forward v6", tbl.Forward(peer6, "d0", []netip.Addr{v6}, ports))
	in.want(ip4, "vipd:mark", "vipd:local", "vipd:forward")
	in.want(ip6, "vipd:mark", "vipd:local", "vipd:forward")

	// Refused calls change nothing.
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"unknown interface", tbl.Forward(peer4, "nope0", []netip.Addr{v4}, ports)},
		{"peer is this node", tbl.Forward(netip.MustParseAddr("10.78.0.2"), "d0", []netip.Addr{v4}, ports)},
		{"families differ", tbl.Forward(peer6, "d0", []netip.Addr{v4}, ports)},
		{"no ports", tbl.Mark([]netip.Addr{v4}, nil)},
	} {
		if !errors.Is(tc.err, flowfwd.ErrInvalidArgument) {
			t.Errorf("%s: err = %v, want ErrInvalidArgument", tc.name, tc.err)
		}
	}
	in.want(ip4, "vipd:mark", "vipd:local", "vipd:forward")
	in.want(ip6, "vipd:mark", "vipd:local", "vipd:forward")

	must("StopForward", tbl.StopForward())
	in.want(ip4, "vipd:mark")
	in.want(ip6, "vipd:mark")
	must("StopForward again", tbl.StopForward())
	if _, err := tbl.Stats(); err != nil {
		t.Fatalf("Stats: %v", err)
	}

	must("Close", tbl.Close())
	in.want(ip4)
	in.want(ip6)
	must("Close again", tbl.Close())
	if err := tbl.Mark([]netip.Addr{v4}, ports); !errors.Is(err, flowfwd.ErrClosed) {
		t.Fatalf("Mark after Close: %v, want ErrClosed", err)
	}
	if _, err := tbl.Stats(); !errors.Is(err, flowfwd.ErrClosed) {
		t.Fatalf("Stats after Close: %v, want ErrClosed", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := flowfwd.New(flowfwd.Config{CtMark: 0x3}, nil); !errors.Is(err, flowfwd.ErrInvalidConfig) {
		t.Fatalf("New with two mark bits: %v, want ErrInvalidConfig", err)
	}
}

// Concurrent calls are serialised: every call succeeds, and the rules end as the last call left them.
func TestTableConcurrentCalls(t *testing.T) {
	requireNetns(t)
	n := newNS(t, "t")
	run(t, "ip", "-n", n.name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
	run(t, "ip", "-n", n.name, "addr", "add", "10.78.0.2/24", "dev", "d0")
	run(t, "ip", "-n", n.name, "link", "set", "d0", "up")
	var tbl *flowfwd.Table
	var err error
	n.do(t, func() { tbl, err = flowfwd.New(flowfwd.Config{}, testutil.Logger(t)) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tbl.Close() })
	vips := []netip.Addr{netip.MustParseAddr("10.78.0.50")}
	peer := netip.MustParseAddr("10.78.0.1")

	const workers, calls = 4, 25
	errs := make(chan error, workers*calls)
	done := make(chan struct{})
	for w := range workers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range calls {
				var err error
				switch (w + i) % 4 {
				case 0:
					err = tbl.Mark(vips, []uint16{uint16(6000 + i)})
				case 1:
					err = tbl.Forward(peer, "d0", vips, []uint16{6443})
				case 2:
					err = tbl.StopForward()
				default:
					_, err = tbl.Stats()
				}
				errs <- err
			}
		}()
	}
	for range workers {
		<-done
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent call: %v", err)
		}
	}
	// A last pair of calls decides the state, whatever the interleaving was.
	if err := tbl.Mark(vips, []uint16{6443}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Forward(peer, "d0", vips, []uint16{6443}); err != nil {
		t.Fatal(err)
	}
	inspect(t, n).want(ip4, "vipd:mark", "vipd:local", "vipd:forward")
}
