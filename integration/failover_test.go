//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// Bounds: generous, so a loaded 2-core machine does not flake; the measured
// figures in the printed table are the real targets.
const (
	crashBound     = 3 * time.Second
	gracefulBound  = time.Second
	detectionBound = 2*500*time.Millisecond + 400*time.Millisecond + 2*time.Second // -fall 2 × interval + timeout + 2 s
	noGARPBound    = 90 * time.Second                                              // records only what the announcements buy
)

// TestFailover runs scenarios 1–11 of issue 5 against one compose project.
func TestFailover(t *testing.T) {
	e := newEnv(t)
	s := &suite{env: e}
	t.Cleanup(func() {
		if t.Failed() {
			e.logs()
		}
		e.down()
	})
	e.build()
	// The upstreams first: this creates the networks the observers watch.
	e.mustCompose(2*time.Minute, "up", "-d", "--no-build", "api1", "api2", "api3")
	s.startObservers(t)
	t.Cleanup(func() {
		tab := s.table()
		fmt.Fprintf(os.Stdout, "\n=== vipd failover outages (probe every 10 ms from the host, 50 ms connect budget) ===\n%s\n", tab)
		if err := os.WriteFile("results.txt", []byte(tab), 0o644); err != nil {
			t.Logf("write results.txt: %v", err)
		}
	})

	steps := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"01_cold_start", scenarioColdStart},
		{"02_kill_leader_06_restart_rejoins", scenarioKillLeader},
		{"03_graceful_stop", scenarioGracefulStop},
		{"04_leader_upstreams_unhealthy", scenarioUnhealthy},
		{"05_leader_partitioned", scenarioPartition},
		{"07_rolling_restart", scenarioRolling},
		{"08_no_quorum", scenarioNoQuorum},
		{"09_connections_survive", scenarioConnections},
		{"10_pause_leader", scenarioPause},
		{"11_kill_leader_without_garp", scenarioNoGARP},
	}
	for i, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) { st.fn(t, s) })
		if i == 0 && !ok {
			t.Fatal("the cluster did not form: skipping the failover scenarios")
		}
		if !ok && i+1 < len(steps) {
			s.restore(t)
		}
	}
}

// scenario 1: a cold start in random order forms one cluster; `vipd members`
// shows three alive nodes, one leader, the VIP holder.
func scenarioColdStart(t *testing.T, s *suite) {
	e := s.env
	order := append([]string(nil), lbs...)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	t.Logf("starting %v", order)
	started := time.Now()
	for _, n := range order {
		e.mustCompose(2*time.Minute, "up", "-d", "--no-build", "--no-deps", n)
		time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
	}
	leader := s.waitStable(t, lbs, 90*time.Second)
	formed := time.Since(started)

	out, err := e.cli(leader, "members")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vipd members on %s:\n%s", leader, out)
	if !strings.Contains(out, leader+" *") || strings.Count(out, "alive") != 3 || strings.Count(out, "holder") != 1 {
		t.Errorf("vipd members table: want 3 alive, %s marked leader (*) and one holder:\n%s", leader, out)
	}
	for _, n := range lbs {
		js, err := e.cli(n, "members", "-format", "json")
		if err != nil {
			t.Fatal(err)
		}
		var m members
		if err := jsonUnmarshal(js, &m); err != nil {
			t.Fatalf("vipd members -format json on %s: %v\n%s", n, err, js)
		}
		leaders, holders := 0, 0
		for _, x := range m.Members {
			if x.Leader {
				leaders++
			}
			if x.VIPHeld {
				holders++
			}
		}
		if len(m.Members) != 3 || leaders != 1 || m.Leader != leader || m.VIPHolder != leader || holders != 1 {
			t.Errorf("members on %s: %d members, %d leaders, leader %q, holder %q (%d marked), want 3, 1, %s, %s, 1",
				n, len(m.Members), leaders, m.Leader, m.VIPHolder, holders, leader, leader)
		}
	}
	if _, err := e.cli(leader, "status", "-format", "json"); err != nil {
		t.Error(err)
	}
	s.mu.Lock()
	s.res = append(s.res, result{scenario: "01 cold start → VIP served", outage: formed, recovered: true,
		note: "time from the first node's start (random order, random delays) to a stable cluster"})
	s.mu.Unlock()
	r := s.arp.Report(started, time.Now())
	if r.TwoMACWindows > 0 || r.Overlap > 0 {
		t.Errorf("SPLIT BRAIN during formation: %+v", r)
	}
}

// scenarios 2 and 6: docker kill of the leader; another node serves the VIP;
// the killed node restarted rejoins as a follower and the VIP stays put.
func scenarioKillLeader(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, lbs, 60*time.Second)
		from := time.Now()
		e.mustDocker("kill", e.container(leader))
		next := s.waitStable(t, others(leader), 30*time.Second)
		s.measure(t, "02 leader killed (docker kill)", from, crashBound, "")

		e.mustDocker("start", e.container(leader))
		restarted := time.Now()
		after := s.waitStable(t, lbs, 60*time.Second)
		if after != next {
			t.Errorf("after %s rejoined, leader is %s, want %s to keep it (no preemption)", leader, after, next)
		}
		time.Sleep(2 * time.Second) // watch for a late flap back
		if l, err := s.stable(lbs); err != nil || l != next {
			t.Errorf("2 s after the rejoin: leader %q (%v), want %s", l, err, next)
		}
		s.measure(t, "06 killed node restarted, rejoins", restarted, 500*time.Millisecond, "")
	}
}

// scenario 3: docker stop of the leader (SIGTERM: leadership transfer, VIP
// released first) gives a near-zero outage.
func scenarioGracefulStop(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, lbs, 60*time.Second)
		from := time.Now()
		stopped := make(chan error, 1)
		go func() { _, err := e.docker("stop", "-t", "20", e.container(leader)); stopped <- err }()
		s.waitStable(t, others(leader), 30*time.Second)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		s.measure(t, "03 leader stopped (docker stop)", from, gracefulBound, "")
		code := e.mustDocker("inspect", "-f", "{{.State.ExitCode}}", e.container(leader))
		if code != "0" {
			t.Errorf("vipd on %s exited %s after SIGTERM, want 0", leader, code)
		}
		e.mustDocker("start", e.container(leader))
	}
	s.waitStable(t, lbs, 60*time.Second)
}

// scenario 4: all upstreams unreachable from the leader only: the VIP moves
// to a healthy node within the -fall detection time.
func scenarioUnhealthy(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < max(1, trials()-1); i++ {
		leader := s.waitStable(t, lbs, 60*time.Second)
		from := time.Now()
		if err := e.blockUpstreams(leader, true); err != nil {
			t.Fatal(err)
		}
		next := ""
		waitFor(t, 30*time.Second, "VIP on a healthy node", func() error {
			h := e.nodeOfMAC(s.arp.Holder(time.Now().Add(-200 * time.Millisecond)))
			if h == leader || h == "" || !s.probe.OKSince(time.Now().Add(-200*time.Millisecond)) {
				return fmt.Errorf("VIP answered by %q", h)
			}
			next = h
			return nil
		})
		s.measure(t, "04 leader's upstreams unhealthy", from, detectionBound, "")
		if err := e.blockUpstreams(leader, false); err != nil {
			t.Fatal(err)
		}
		if l := s.waitStable(t, lbs, 60*time.Second); l != next {
			t.Errorf("after %s's upstreams came back, leader is %s, want %s (no flap back)", leader, l, next)
		}
	}
}

// scenario 5: the leader cut off its peers (clients still reach it) releases
// the VIP; the majority takes it; after healing it does not flap back.
func scenarioPartition(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < max(1, trials()-1); i++ {
		leader := s.waitStable(t, lbs, 60*time.Second)
		from := time.Now()
		if err := e.cut(leader); err != nil {
			t.Fatal(err)
		}
		next := s.waitStable(t, others(leader), 30*time.Second)
		if st, err := e.status(leader); err != nil || st.VIPHeld {
			t.Errorf("partitioned old leader %s: status %+v (%v), want the VIP released", leader, st, err)
		}
		time.Sleep(time.Until(from.Add(5 * time.Second))) // hold the partition 5 s, as the VIP issue's target
		if err := e.heal(leader); err != nil {
			t.Fatal(err)
		}
		if l := s.waitStable(t, lbs, 60*time.Second); l != next {
			t.Errorf("after healing, leader is %s, want %s (no flap back)", l, next)
		}
		time.Sleep(2 * time.Second)
		if l, err := s.stable(lbs); err != nil || l != next {
			t.Errorf("2 s after healing: leader %q (%v), want %s", l, err, next)
		}
		s.measure(t, "05 leader cut off its peers 5 s", from, crashBound, "")
	}
}

// scenario 7: docker restart of every node in turn: the VIP always comes back.
func scenarioRolling(t *testing.T, s *suite) {
	e := s.env
	s.waitStable(t, lbs, 60*time.Second)
	from := time.Now()
	for _, n := range lbs {
		e.mustDocker("restart", "-t", "20", e.container(n))
		s.waitStable(t, lbs, 60*time.Second)
	}
	s.measure(t, "07 rolling restart lb1, lb2, lb3", from, gracefulBound, "longest gap over all three restarts")
}

// scenario 8: two of three down: the survivor holds no VIP (no quorum) and
// says so; one back: the VIP is served again.
func scenarioNoQuorum(t *testing.T, s *suite) {
	e := s.env
	leader := s.waitStable(t, lbs, 60*time.Second)
	followers := others(leader)
	e.mustDocker("kill", e.container(followers[0]))
	e.mustDocker("kill", e.container(followers[1]))
	waitFor(t, 30*time.Second, "survivor drops the VIP", func() error {
		st, err := e.status(leader)
		if err != nil {
			return err
		}
		if st.VIPHeld {
			return fmt.Errorf("%s still holds the VIP without a quorum (role %s)", leader, st.Role)
		}
		return nil
	})
	time.Sleep(time.Second)
	if h := s.arp.Holder(time.Now().Add(-500 * time.Millisecond)); h != "" {
		t.Errorf("VIP still answered by %s without a quorum", e.nodeOfMAC(h))
	}
	m, err := e.members(leader)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("members on the survivor %s: leader %q holder %q note %q", leader, m.Leader, m.VIPHolder, m.Note)
	if m.Leader != "" || m.VIPHolder != "" || m.Note == "" {
		t.Errorf("survivor's members: leader %q, holder %q, note %q; want no leader, no holder and a note saying why", m.Leader, m.VIPHolder, m.Note)
	}
	if out, err := e.cli(leader, "members"); err == nil {
		t.Logf("vipd members on the survivor:\n%s", out)
	}
	back := time.Now()
	e.mustDocker("start", e.container(followers[0]))
	s.waitStable(t, []string{leader, followers[0]}, 60*time.Second)
	s.measure(t, "08 quorum back (2 of 3) → VIP served", back, 15*time.Second, "time from the start of the 2nd node")
	e.mustDocker("start", e.container(followers[1]))
	s.waitStable(t, lbs, 60*time.Second)
}

// scenario 9: connections through an unaffected node's proxy survive a
// failover elsewhere, both ways round.
func scenarioConnections(t *testing.T, s *suite) {
	e := s.env
	leader := s.waitStable(t, lbs, 60*time.Second)
	follower := others(leader)[0]

	// a) long-lived connections to a follower's own address; the leader is killed.
	conns := dialKeepAlive(t, net.JoinHostPort(e.lbIP(follower), "6443"), 3)
	from := time.Now()
	e.mustDocker("kill", e.container(leader))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		conns.getAll(t, "to "+follower+" while "+leader+" is killed")
		time.Sleep(100 * time.Millisecond)
	}
	s.waitStable(t, others(leader), 30*time.Second)
	s.measure(t, "09a kill leader, conns to a follower", from, crashBound, "")
	e.mustDocker("start", e.container(leader))
	leader = s.waitStable(t, lbs, 60*time.Second)

	// b) long-lived connections through the VIP (to the leader); a follower is killed.
	vipConns := dialKeepAlive(t, net.JoinHostPort(e.vip().String(), "6443"), 3)
	victim := others(leader)[0]
	from = time.Now()
	e.mustDocker("kill", e.container(victim))
	deadline = time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		vipConns.getAll(t, "through the VIP while follower "+victim+" is killed")
		time.Sleep(100 * time.Millisecond)
	}
	if l, err := s.stable(others(victim)); err != nil || l != leader {
		t.Errorf("after killing follower %s: leader %q (%v), want %s unchanged", victim, l, err, leader)
	}
	s.measure(t, "09b kill follower, conns via the VIP", from, 200*time.Millisecond, "")
	e.mustDocker("start", e.container(victim))
	s.waitStable(t, lbs, 60*time.Second)
}

// scenario 10: the leader's container paused (a hung process on a live
// kernel): another node serves the VIP; the hung node's kernel must not
// answer ARP for it meanwhile, nor its process after it resumes.
func scenarioPause(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, lbs, 60*time.Second)
		from := time.Now()
		e.mustDocker("pause", e.container(leader))
		next := s.waitStable(t, others(leader), 30*time.Second)
		s.measure(t, "10 leader paused (docker pause)", from, crashBound, "")
		from = time.Now()
		e.mustDocker("unpause", e.container(leader))
		l := s.waitStable(t, lbs, 60*time.Second)
		time.Sleep(2 * time.Second)
		if l != next {
			t.Errorf("after unpausing %s, leader is %s, want %s", leader, l, next)
		}
		s.measure(t, "10 paused leader resumed", from, 500*time.Millisecond, "")
	}
}

// scenario 11: the crash scenario with gratuitous ARP off: the host keeps
// sending to the dead holder's MAC until its neighbour entry expires.
func scenarioNoGARP(t *testing.T, s *suite) {
	e := s.env
	e.garp = false
	e.macs = map[string]string{}
	e.mustCompose(3*time.Minute, "up", "-d", "--no-build", "--force-recreate", "lb1", "lb2", "lb3")
	leader := s.waitStable(t, lbs, 120*time.Second)
	from := time.Now()
	e.mustDocker("kill", e.container(leader))
	waitFor(t, noGARPBound, "VIP served by a survivor without GARP", func() error {
		if !s.probe.OKSince(time.Now().Add(-200 * time.Millisecond)) {
			return fmt.Errorf("no successful probe")
		}
		return nil
	})
	s.measure(t, "11 leader killed, gratuitous ARP off", from, noGARPBound, "the host's neighbour cache must expire")
}

// keepAlive is a set of TLS connections each reused for many requests.
type keepAlive struct {
	conns []net.Conn
	rds   []*bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string, n int) *keepAlive {
	t.Helper()
	k := &keepAlive{}
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		tc := probe.NewTLS(c)
		k.conns = append(k.conns, tc)
		k.rds = append(k.rds, bufio.NewReader(tc))
	}
	k.getAll(t, "before the fault")
	return k
}

func (k *keepAlive) getAll(t *testing.T, when string) {
	t.Helper()
	for i, c := range k.conns {
		if _, err := probe.GetOn(c, k.rds[i], time.Now().Add(2*time.Second)); err != nil {
			t.Fatalf("long-lived connection %d %s: %v", i, when, err)
		}
	}
}
