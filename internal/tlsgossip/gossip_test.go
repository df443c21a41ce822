package tlsgossip

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vipd/vipd/internal/testutil"
)

// startCluster starts n members named n1…nN over tlsgossip and joins them.
func startCluster(t testing.TB, p *testPKI, n int, o memberOpts) []*member {
	t.Helper()
	ms := make([]*member, n)
	names := make([]string, n)
	for i := range ms {
		names[i] = fmt.Sprintf("n%d", i+1)
		ms[i] = startMember(t, p, names[i], o)
	}
	for _, m := range ms[1:] {
		if _, err := m.ml.Join([]string{ms[0].addr()}); err != nil {
			t.Fatalf("%s joins: %v", m.name, err)
		}
	}
	for _, m := range ms {
		testutil.WaitFor(t, 10*time.Second, m.name+" sees all members alive", func() bool { return m.sees(names...) })
	}
	return ms
}

func TestClusterFormsAndGossipsMetadata(t *testing.T) {
	p := newPKI(t)
	ms := startCluster(t, p, 3, memberOpts{})
	ms[2].del.set("healthy=true priority=7")
	if err := ms[2].ml.UpdateNode(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:2] {
		testutil.WaitFor(t, 10*time.Second, m.name+" learns n3's metadata", func() bool {
			return m.ev.metaOf("n3") == "healthy=true priority=7"
		})
	}
	for _, m := range ms {
		testutil.WaitFor(t, 10*time.Second, m.name+" sends and receives packets", func() bool {
			st := m.tr.Stats()
			return st.PacketsSent > 0 && st.PacketsReceived > 0
		})
		t.Logf("%s: %+v", m.name, m.tr.Stats())
		// Handshakes may time out on a loaded machine (memberlist's TCP fallback ping allows one probe
		// interval), but no peer's certificate is ever refused.
		for _, bad := range []string{"not verified", "bad certificate", "lacks", "names no vipd node"} {
			if m.logs.Contains(bad) {
				t.Errorf("%s refused a peer's certificate (%q):\n%s", m.name, bad, m.logs.String())
			}
		}
	}
}

// TestFailureDetection kills a node (Shutdown, no Leave) and measures how long the others take to declare it
// dead, with the cluster package's production timings, over tlsgossip and over memberlist's own UDP/TCP
// transport for comparison.
func TestFailureDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few seconds")
	}
	for _, plain := range []bool{false, true} {
		name := map[bool]string{false: "tls", true: "udp"}[plain]
		t.Run(name, func(t *testing.T) {
			p := newPKI(t)
			o := memberOpts{timing: production, plain: plain}
			ms := make([]*member, 3)
			for i := range ms {
				ms[i] = startMember(t, p, fmt.Sprintf("n%d", i+1), o)
			}
			for _, m := range ms[1:] {
				if _, err := m.ml.Join([]string{ms[0].addr()}); err != nil {
					t.Fatal(err)
				}
			}
			for _, m := range ms {
				testutil.WaitFor(t, 10*time.Second, "all alive", func() bool { return m.sees("n1", "n2", "n3") })
			}
			killed := time.Now()
			ms[2].ml.Shutdown()
			var worst time.Duration
			for _, m := range ms[:2] {
				testutil.WaitFor(t, 20*time.Second, m.name+" declares n3 dead", func() bool { _, ok := m.ev.leftAt("n3"); return ok })
				at, _ := m.ev.leftAt("n3")
				worst = max(worst, at.Sub(killed))
			}
			t.Logf("%s: killed node declared dead by both peers after %v (probe 500 ms, probe timeout 200 ms, suspicion mult 4)",
				name, worst.Round(time.Millisecond))
			// memberlist's own bound: a probe round reaches n3 within 2 probe intervals, then the suspicion
			// timeout (mult 4 × 500 ms); 6 s leaves room for a loaded machine.
			if worst > 6*time.Second {
				t.Errorf("detection took %v, want under 6 s", worst)
			}
		})
	}
}

// TestStrangersCannotJoin: a node with a certificate from another CA, and a plain memberlist node, are refused
// and never appear as members, while the cluster keeps working.
func TestStrangersCannotJoin(t *testing.T) {
	p := newPKI(t)
	ms := startCluster(t, p, 2, memberOpts{})
	strangers := []struct {
		name string
		m    func() *member
		log  string
	}{
		// The rogue trusts the cluster's CA (its certificate is public), so only the members' checks stop it.
		{"foreign CA", func() *member { return startMember(t, newPKI(t).trusting(t, p), "rogue-ca", memberOpts{}) }, "not verified by the CA bundle"},
		{"plain memberlist", func() *member { return startMember(t, nil, "rogue-plain", memberOpts{plain: true}) }, "does not look like a TLS handshake"},
	}
	for _, s := range strangers {
		t.Run(s.name, func(t *testing.T) {
			rogue := s.m()
			marks := []int{ms[0].logs.Mark(), ms[1].logs.Mark()}
			for i, m := range ms {
				if n, err := rogue.ml.Join([]string{m.addr()}); err == nil {
					t.Fatalf("%s joined %s (%d contacted)", rogue.name, m.name, n)
				}
				testutil.WaitFor(t, 5*time.Second, m.name+" logs the refusal", func() bool {
					// A plain node's TCP dials do not use its bind address as source: match on the reason only.
					return m.logs.ContainsLineSince(marks[i], "refused connection", s.log)
				})
			}
			// The rogue also fires its packets at the members (what a rejoin attempt of a known node would do):
			// a plain node's UDP goes to a port nobody listens on; a TLS one is refused like its streams.
			for _, m := range ms {
				n := m.ml.LocalNode()
				rogue.ml.Ping(m.name, &net.UDPAddr{IP: n.Addr, Port: int(n.Port)}) // fails: no answer
			}
			for _, m := range ms {
				if m.ev.joins(rogue.name) != 0 || m.alive()[rogue.name] {
					t.Errorf("%s saw %s as a member", m.name, rogue.name)
				}
				if !m.sees("n1", "n2") {
					t.Errorf("%s: members %v, want n1 and n2", m.name, m.alive())
				}
			}
			if rogue.ml.NumMembers() != 1 {
				t.Errorf("rogue knows %d members, want only itself", rogue.ml.NumMembers())
			}
		})
	}
}

// TestSilentStrangersDoNotBlock: connections that never speak, from one address and from many, neither stall
// accepts nor crowd out a real peer's handshake, are closed at the handshake timeout, and are logged once per
// address.
func TestSilentStrangersDoNotBlock(t *testing.T) {
	p := newPKI(t)
	const hsTimeout = 2 * time.Second
	ms := startCluster(t, p, 2, memberOpts{change: func(c *Config) { c.HandshakeTimeout = hsTimeout }})
	target := ms[0]
	mark := target.logs.Mark()

	// 12 addresses × 10 silent connections: over the per-IP bound (8) and the global bound (64).
	var silent []net.Conn
	t.Cleanup(func() {
		for _, c := range silent {
			c.Close()
		}
	})
	var ips []string
	for range 12 {
		ip := nextIP()
		ips = append(ips, ip)
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: time.Second}
		for range 10 {
			c, err := d.Dial("tcp", target.addr())
			if err != nil {
				t.Fatal(err)
			}
			silent = append(silent, c)
		}
	}
	opened := time.Now()

	// A new peer joins through the flooded node, at once.
	n3 := startMember(t, p, "n3", memberOpts{})
	t0 := time.Now()
	if _, err := n3.ml.Join([]string{target.addr()}); err != nil {
		t.Fatalf("join through a node flooded with silent connections: %v", err)
	}
	joinTook := time.Since(t0)
	for _, m := range append(ms, n3) {
		testutil.WaitFor(t, 10*time.Second, m.name+" sees n1..n3", func() bool { return m.sees("n1", "n2", "n3") })
	}
	t.Logf("join through the flooded node took %v", joinTook)
	if joinTook >= hsTimeout {
		t.Errorf("join took %v, not less than the handshake timeout %v: it waited behind the strangers", joinTook, hsTimeout)
	}

	// Every silent connection is closed by the handshake timeout (or before, beyond the bounds).
	for i, c := range silent {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("silent connection %d got data", i)
		}
	}
	if d := time.Since(opened); d > hsTimeout+3*time.Second {
		t.Errorf("silent connections closed only after %v", d)
	}
	// One line per stranger address, however many of its connections were refused.
	for _, ip := range ips {
		if n := target.logs.CountLinesSince(mark, "refused connection", "peer="+ip+":"); n != 1 {
			t.Errorf("%s refused %d times in the log, want 1", ip, n)
		}
	}
	// (tls closes a connection whose handshake deadline passed before the Transport counts the refusal.)
	testutil.WaitFor(t, 5*time.Second, "every silent connection counted as refused", func() bool {
		return target.tr.Stats().Refused >= int64(len(silent))
	})
}

// TestRestartedNodeRejoins: a node that comes back on the same address after being declared dead is alive
// again everywhere, over fresh connections.
func TestRestartedNodeRejoins(t *testing.T) {
	p := newPKI(t)
	ms := startCluster(t, p, 3, memberOpts{})
	addr := ms[2].tr.Addr()
	ms[2].ml.Shutdown()
	for _, m := range ms[:2] {
		testutil.WaitFor(t, 10*time.Second, m.name+" declares n3 dead", func() bool { _, ok := m.ev.leftAt("n3"); return ok })
	}
	back := startMember(t, p, "n3", memberOpts{change: func(c *Config) { c.BindAddr, c.BindPort = addr.IP.String(), addr.Port }})
	if _, err := back.ml.Join([]string{ms[0].addr()}); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(ms[:2], back) {
		testutil.WaitFor(t, 10*time.Second, m.name+" sees n3 alive again", func() bool { return m.sees("n1", "n2", "n3") })
	}
	_ = memberlist.StateAlive
}
