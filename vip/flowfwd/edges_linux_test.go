//go:build linux

package flowfwd_test

import (
	"net/netip"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip/flowfwd"
)

// The edge cases of "unknown flow", each with A draining (VIP on lo, serving) and B holding the VIP: a flow
// wrongly forwarded to A is answered with RST by A, so every check here can fail.

// holder sets up the LAN with B already holding vip and A draining it, both serving.
func holder(t *testing.T, vip netip.Addr) (l *lan, a, b *node) {
	l = newLAN(t, 2)
	a, b = l.nodes[0], l.nodes[1]
	a.addLo(t, vip)
	b.addLo(t, vip)
	serve(t, a.ns, 'A')
	serve(t, b.ns, 'B')
	l.pointVIP(t, vip, b)
	return l, a, b
}

func newTable(t *testing.T, n *node) *flowfwd.Table {
	t.Helper()
	var tbl *flowfwd.Table
	var err error
	n.do(t, func() { tbl, err = flowfwd.New(flowfwd.Config{}, testutil.Logger(t)) })
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = tbl.Close() })
	return tbl
}

// enableConntrack makes n track connections before vipd's rules exist, as docker or kube-proxy rules do
// on a real host: a table of someone else's with a "ct state" rule.
func enableConntrack(t *testing.T, n *node) {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.handle)))
	if err != nil {
		t.Fatal(err)
	}
	tb := c.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "in", Table: tb, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{2, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Counter{},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("enable conntrack in %s: %v", n.name, err)
	}
}

// Flows B accepted before its rules existed (no rules at all, or Mark but not yet Forward; with and without
// conntrack entries that predate the mark rule) stay local once Forward is installed.
func TestFlowsAcceptedBeforeForwardStayLocal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		is4        bool
		markFirst  bool // Mark before the flows open
		conntrack  bool // conntrack already tracks the flows (unmarked) before Mark
		wantMarked bool
	}{
		{name: "IPv4 no rules yet", is4: true},
		{name: "IPv4 no rules yet, conntrack entries predate Mark", is4: true, conntrack: true},
		{name: "IPv4 Mark before the flows", is4: true, markFirst: true, wantMarked: true},
		{name: "IPv6 no rules yet, conntrack entries predate Mark", is4: false, conntrack: true},
		{name: "IPv6 Mark before the flows", is4: false, markFirst: true, wantMarked: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vip := vipV6
			if tc.is4 {
				vip = vipV4
			}
			l, a, b := holder(t, vip)
			if tc.conntrack {
				enableConntrack(t, b)
			}
			tbl := newTable(t, b)
			vips, ports := []netip.Addr{vip}, []uint16{port}
			if tc.markFirst {
				if err := tbl.Mark(vips, ports); err != nil {
					t.Fatal(err)
				}
			}
			conns, ids := dialMany(t, l.client, vip, 50)
			requireAll(t, ids, 'B', "connections before Forward")
			if !tc.markFirst {
				if err := tbl.Mark(vips, ports); err != nil {
					t.Fatal(err)
				}
			}
			if err := tbl.Forward(a.addr(tc.is4), b.ifname, vips, ports); err != nil {
				t.Fatal(err)
			}
			pingAll(t, conns, "connection B accepted before Forward")
			st, err := tbl.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.Forwarded != 0 {
				t.Errorf("%d segments of B's own flows were forwarded", st.Forwarded)
			}
			if marked := st.MarkedSYNs >= 50; marked != tc.wantMarked {
				t.Errorf("MarkedSYNs = %d, want marked = %v", st.MarkedSYNs, tc.wantMarked)
			}
		})
	}
}

// A handshake completed through a SYN cookie leaves no request socket behind, so the socket lookup alone
// would forward its final ACK to A (which resets it): the SYN's conntrack mark keeps it local. Without Mark
// the connection is reset — the reason Mark exists.
func TestSYNCookieHandshakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		is4  bool
		mark bool
	}{
		{"IPv4 with Mark", true, true},
		{"IPv6 with Mark", false, true},
		{"IPv4 without Mark is reset", true, false},
		{"IPv6 without Mark is reset", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vip := vipV6
			if tc.is4 {
				vip = vipV4
			}
			l, a, b := holder(t, vip)
			b.sysctl(t, "net.ipv4.tcp_syncookies", "2") // always answer with a cookie (covers IPv6 too)
			tbl := newTable(t, b)
			vips, ports := []netip.Addr{vip}, []uint16{port}
			if tc.mark {
				if err := tbl.Mark(vips, ports); err != nil {
					t.Fatal(err)
				}
			}
			if err := tbl.Forward(a.addr(tc.is4), b.ifname, vips, ports); err != nil {
				t.Fatal(err)
			}
			if tc.mark {
				conns, ids := dialMany(t, l.client, vip, 20)
				requireAll(t, ids, 'B', "cookie handshakes")
				pingAll(t, conns, "cookie handshake")
				return
			}
			// The client's final ACK goes to A, which has no socket for it and resets it; the RST can
			// arrive before the client's connect returns.
			if id, err := dialGreeting(t, l.client, vip); !isReset(err) {
				t.Fatalf("cookie handshake without Mark: greeting %q, error %v, want a reset by A", id, err)
			}
		})
	}
}
