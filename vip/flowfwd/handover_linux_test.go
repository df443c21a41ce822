//go:build linux

package flowfwd_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// The hand-over end to end, in three namespaces on a bridge: a client, the old holder A and the new holder
// B, both with ip_forward=0 and arp_ignore=1, each running an echo server on the wildcard :6443. A holds
// the VIP on lo; the client opens idle and streaming connections through it; then the VIP moves: B installs
// Mark, puts the VIP on its lo, installs Forward to A, and the client's neighbour entry for the VIP moves to
// B's MAC (ip neigh replace through netlink in the client: exact and instant, where a gratuitous ARP from B
// would be what vipd sends). A keeps the VIP on lo and keeps serving.

const (
	idleConns   = 1000
	streamConns = 20
	newConns    = 20
	moveTimeout = 30 * time.Second
	pingTimeout = 10 * time.Second
)

func TestHandover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		is4     bool
		forward bool
	}{
		{"IPv4", true, true},
		{"IPv6", false, true},
		{"IPv4 without Forward every connection is reset", true, false},
		{"IPv6 without Forward every connection is reset", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) { testHandover(t, tc.is4, tc.forward) })
	}
}

func testHandover(t *testing.T, is4, forward bool) {
	start := time.Now()
	phase := func(what string) { t.Logf("%8v  %s", time.Since(start).Round(time.Millisecond), what) }
	l := newLAN(t, 2)
	a, b := l.nodes[0], l.nodes[1]
	vip := vipV6
	if is4 {
		vip = vipV4
	}
	vips, ports := []netip.Addr{vip}, []uint16{port}

	a.addLo(t, vip)
	// A ran vipd while it held the VIP, so its own flows are marked; it keeps the rules while it drains
	// (it forwards nothing: it holds no VIP any more).
	if err := newTable(t, a).Mark(vips, ports); err != nil {
		t.Fatalf("Mark on A: %v", err)
	}
	srvA := serve(t, a.ns, 'A')
	srvB := serve(t, b.ns, 'B')
	l.pointVIP(t, vip, a)

	idle, ids := dialMany(t, l.client, vip, idleConns)
	requireAll(t, ids, 'A', "idle connections before the move")
	sconns, ids := dialMany(t, l.client, vip, streamConns)
	requireAll(t, ids, 'A', "streaming connections before the move")
	streams := make([]*stream, len(sconns))
	for i, c := range sconns {
		// 4 KiB every 10 ms: 400 KB/s each, 8 MB/s in all (the test runs under -race on shared cores);
		// at most 64 MiB each.
		streams[i] = startStream(c, uint64(i+1), 4<<10, 10*time.Millisecond, 64<<20)
	}
	t.Cleanup(func() {
		for _, s := range streams {
			s.finish(5 * time.Second)
		}
	})
	waitStreams(t, streams, nil, 256<<10, "streams flowing through A")
	phase("connections open, streams flowing through A; moving the VIP")

	// The move.
	tbl := newTable(t, b)
	if err := tbl.Mark(vips, ports); err != nil {
		t.Fatalf("Mark: %v", err)
	}
	b.addLo(t, vip)
	if forward {
		if err := tbl.Forward(a.addr(is4), b.ifname, vips, ports); err != nil {
			t.Fatalf("Forward: %v", err)
		}
	}
	if got := b.readSysctl(t, "net.netfilter.nf_conntrack_tcp_loose"); got != "1" {
		t.Fatalf("nf_conntrack_tcp_loose = %s on the new holder: the test must run with the default 1", got)
	}
	if got := b.readSysctl(t, "net.ipv4.ip_forward"); got != "0" {
		t.Fatalf("ip_forward = %s on the new holder, want 0", got)
	}
	moved := received(streams)
	l.pointVIP(t, vip, b)

	if !forward {
		// Today's behaviour: B's stack answers every old flow's next segment with RST.
		for i, c := range idle {
			if err := ping(c, uint64(i), pingTimeout); !isReset(err) {
				t.Fatalf("idle connection %d after the move without Forward: %v, want a reset", i, err)
			}
		}
		for i, s := range streams {
			s.finish(pingTimeout)
			if werr, rerr := s.errs(); !isReset(werr) && !isReset(rerr) {
				t.Errorf("stream %d after the move without Forward: write %v, read %v, want a reset", i, werr, rerr)
			}
		}
		return
	}

	// Every old flow keeps going through B to A.
	waitStreams(t, streams, moved, 512<<10, "streams flowing through B to A after the move")
	phase("streams flowing through B to A")
	pingAll(t, idle, "idle connection after the move")
	phase("idle connections answered through B")
	fresh, ids := dialMany(t, l.client, vip, newConns)
	requireAll(t, ids, 'B', "new connections during the drain")
	pingAll(t, fresh, "new connection during the drain")
	phase("new connections served by B")

	st, err := tbl.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	t.Logf("after the move: %+v", st)
	if st.Forwarded < idleConns || st.ForwardedBytes == 0 {
		t.Errorf("Stats %+v: want at least one forwarded segment per idle connection (%d)", st, idleConns)
	}
	if st.MarkedSYNs < newConns {
		t.Errorf("Stats %+v: want at least %d marked SYNs (the new connections)", st, newConns)
	}

	var lost int64
	for i, s := range streams {
		s.finish(moveTimeout)
		if werr, rerr := s.errs(); werr != nil || rerr != nil {
			t.Errorf("stream %d: write %v, read %v", i, werr, rerr)
		}
		if s.recvd.Load() != s.sent.Load() {
			t.Errorf("stream %d: sent %d bytes, %d came back", i, s.sent.Load(), s.recvd.Load())
		}
		lost += s.sent.Load() - s.recvd.Load()
	}
	phase("streams finished")
	if got := srvA.accepted.Load(); got != idleConns+streamConns {
		t.Errorf("A accepted %d connections, want %d (no old flow may reconnect)", got, idleConns+streamConns)
	}
	if got := srvB.accepted.Load(); got != newConns {
		t.Errorf("B accepted %d connections, want the %d new ones", got, newConns)
	}
	t.Logf("%d idle + %d streaming connections moved with 0 resets; %d bytes lost; %+v",
		idleConns, streamConns, lost, st)

	// The client ends old flows during the drain, ten with a FIN (close) and ten with a RST (abort): each
	// must reach A through B so that A frees the socket (A sends nothing on an idle flow, so it would
	// otherwise keep it for good).
	before := srvA.open()
	for _, c := range idle[:10] {
		c.Close()
	}
	for _, c := range idle[10:20] {
		_ = c.SetLinger(0)
		c.Close()
	}
	testutil.WaitFor(t, moveTimeout, "A to see the 20 closed or aborted old flows end", func() bool {
		return srvA.open() <= before-20
	})
	idle = idle[20:]
	phase("closed and aborted old flows ended on A")

	// After StopForward the old flows get today's RST; B's own flows are untouched.
	if err := tbl.StopForward(); err != nil {
		t.Fatalf("StopForward: %v", err)
	}
	for i, c := range idle {
		if err := ping(c, uint64(i), pingTimeout); !isReset(err) {
			t.Fatalf("idle connection %d after StopForward: %v, want a reset", i, err)
		}
	}
	pingAll(t, fresh, "new connection after StopForward")
	phase("after StopForward: old flows reset, new ones served")
	after, err := tbl.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if after.Forwarded < st.Forwarded || after.MarkedSYNs < st.MarkedSYNs {
		t.Errorf("Stats went back across StopForward: %+v, then %+v", st, after)
	}
}

func requireAll(t *testing.T, ids []byte, want byte, what string) {
	t.Helper()
	for i, id := range ids {
		if id != want {
			t.Fatalf("%s: connection %d was served by %q, want %q", what, i, id, want)
		}
	}
}

// pingAll pings every connection and fails on the first error, naming how many failed.
func pingAll(t *testing.T, conns []*net.TCPConn, what string) {
	t.Helper()
	var failed int
	var first error
	var slowest time.Duration
	defer func() {
		if slowest > time.Second {
			t.Logf("%s: slowest ping-pong %v (a lost segment, retransmitted)", what, slowest)
		}
	}()
	for i, c := range conns {
		start := time.Now()
		err := ping(c, uint64(i), pingTimeout)
		slowest = max(slowest, time.Since(start))
		if err != nil {
			failed++
			if first == nil {
				first = fmt.Errorf("connection %d: %w (reset: %v)", i, err, isReset(err))
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%s: %d of %d failed; first: %v", what, failed, len(conns), first)
	}
}

func received(streams []*stream) []int64 {
	out := make([]int64, len(streams))
	for i, s := range streams {
		out[i] = s.recvd.Load()
	}
	return out
}

// waitStreams waits until every stream has received more bytes than from[i] (0 if from is nil).
func waitStreams(t *testing.T, streams []*stream, from []int64, more int64, what string) {
	t.Helper()
	testutil.WaitForErr(t, moveTimeout, what, func() error {
		for i, s := range streams {
			base := int64(0)
			if from != nil {
				base = from[i]
			}
			if _, rerr := s.errs(); rerr != nil {
				return fmt.Errorf("stream %d: %w", i, rerr)
			}
			if got := s.recvd.Load() - base; got < more {
				return fmt.Errorf("stream %d: %d bytes so far, want %d", i, got, more)
			}
		}
		return nil
	})
}
