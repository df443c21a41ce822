//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/integration/probe"
)

// Bounds: generous, so a loaded 2-core machine does not flake; the measured
// figures in the printed table are the real targets (issue 4: crash median
// ≤ 300 ms, graceful ≤ 50 ms, unhealthy within -fall detection + 100 ms).
const (
	crashBound    = 3 * time.Second
	gracefulBound = time.Second
	// noOutageBound is for faults that must not touch the VIP: a few missed
	// 10 ms probes at most.
	noOutageBound = 500 * time.Millisecond
	// detectionBound is -fall 2 × -check-interval + -check-timeout + 2 s.
	detectionBound = 2*500*time.Millisecond + 400*time.Millisecond + 2*time.Second
	quorumBound    = 15 * time.Second
	// noGARPBound only records what the announcements buy.
	noGARPBound = 90 * time.Second
	// reserve is the time kept back from the go test deadline: scenarios
	// that would start later are skipped (and fail the run), since one
	// failing scenario and its restore can take a few minutes.
	reserve = 4 * time.Minute
	// hardStop is how long before the go test deadline a run still going
	// is stopped and its project removed: go test's own timeout panics, and
	// no t.Cleanup would run.
	hardStop = time.Minute
)

// TestFailover runs scenarios 1–11 of issue 5 against one compose project.
// VIPD_IT_TRIALS sets the trials of the repeated scenarios (default 3);
// -run 'TestFailover/(01|05)' runs a subset (the cluster is always formed).
func TestFailover(t *testing.T) {
	e := newEnv(t)
	s := &suite{env: e}
	t.Cleanup(func() { // runs last; TestMain prints the table after go test's own result lines
		tab := s.table()
		report.add(fmt.Sprintf("\n=== vipd failover outages: %s, probe every 10 ms from the host (50 ms connect budget), %d trials ===\n%s",
			e.project, trials(), tab))
		if err := os.WriteFile(filepath.Join(e.root, "integration", "results.txt"), []byte(tab), 0o644); err != nil {
			t.Logf("write results.txt: %v", err)
		}
	})
	t.Cleanup(func() {
		s.logStepDowns(t)
		if t.Failed() {
			s.saveLogs(t)
		}
		for _, p := range e.down() {
			t.Errorf("cleanup of %s: %s", e.project, p)
		}
	})
	removeOnSignal(t, e, s)

	e.build(t)
	// The upstreams first: this creates the networks the observers watch.
	e.mustCompose(t, 2*time.Minute, "up", "-d", "--no-build", "api1", "api2", "api3")
	runStart := time.Now()
	s.startObservers(t)
	t.Cleanup(func() { // runs first, while the ARP watcher still runs
		a := s.arp.Report(runStart, time.Now())
		if sb := s.splitBrain(t, runStart, time.Now()); sb != "" {
			t.Errorf("SPLIT BRAIN at some point of the run: %s", sb)
			s.addFooter("whole run (%s, %d ARP requests for the VIP): SPLIT BRAIN, %s", time.Since(runStart).Round(time.Second), a.Requests, sb)
		} else {
			s.addFooter("whole run (%s, %d ARP requests for the VIP): never answered by two MACs", time.Since(runStart).Round(time.Second), a.Requests)
		}
	})

	formed := false
	if !s.scenario(t, "01_cold_start", func(t *testing.T, s *suite) { formed = true; scenarioColdStart(t, s) }) {
		t.Fatal("the cluster did not form: skipping the failover scenarios")
	}
	if !formed { // filtered out by -run: form the cluster anyway
		e.mustCompose(t, 2*time.Minute, "up", "-d", "--no-build", "lb1", "lb2", "lb3")
		s.learnMACs(t)
		s.waitStable(t, "cluster start", lbs, 90*time.Second)
	}

	steps := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"02_kill_leader_06_restart_rejoins", scenarioKillLeader},
		{"03_graceful_stop", scenarioGracefulStop},
		{"04_leader_upstreams_unhealthy", scenarioUnhealthy},
		{"05_leader_partitioned", scenarioPartition},
		{"07_rolling_restart", scenarioRolling},
		{"08_no_quorum", scenarioNoQuorum},
		{"09_connections_survive", scenarioConnections},
		{"10_pause_leader", scenarioPause},
		{"11_kill_leader_without_garp", scenarioNoGARP}, // last: it recreates the nodes without GARP
	}
	for i, st := range steps {
		if d, ok := t.Deadline(); ok && time.Until(d) < reserve {
			var left []string
			for _, x := range steps[i:] {
				left = append(left, x.name)
			}
			t.Errorf("out of time (go test -timeout): skipped %s", strings.Join(left, ", "))
			break
		}
		if !s.scenario(t, st.name, st.fn) && i+1 < len(steps) {
			s.restore(t)
		}
	}
}

// removeOnSignal removes the compose project if the run is interrupted
// (Ctrl-C, or SIGTERM from CI) or about to hit the go test timeout: in
// those cases no t.Cleanup would run. s may hold the results so far.
func removeOnSignal(t *testing.T, e *env, s *suite) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	var deadline <-chan time.Time
	if d, ok := t.Deadline(); ok {
		timer := time.NewTimer(time.Until(d) - hardStop)
		t.Cleanup(func() { timer.Stop() })
		deadline = timer.C
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		why := ""
		select {
		case sg := <-sig:
			why = sg.String()
		case <-deadline:
			why = fmt.Sprintf("%s before the go test timeout", hardStop)
		case <-done:
			return
		}
		fmt.Fprintf(os.Stderr, "\n%s: stopping the suite, removing compose project %s\n", why, e.project)
		e.halt()
		for _, p := range e.down() {
			fmt.Fprintln(os.Stderr, p)
		}
		fmt.Fprintf(os.Stderr, "results so far:\n%s", s.table())
		os.Exit(1)
	}()
	t.Cleanup(func() { signal.Stop(sig); close(done); <-stopped })
}

// scenario 1: a cold start in random order forms one cluster; `vipd members`
// shows three alive nodes, one leader, the VIP holder.
func scenarioColdStart(t *testing.T, s *suite) {
	e := s.env
	order := append([]string(nil), lbs...)
	rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	started := time.Now()
	for i, n := range order {
		e.mustCompose(t, 2*time.Minute, "up", "-d", "--no-build", "--no-deps", n)
		t.Logf("+%s: %s started", time.Since(started).Round(time.Millisecond), n)
		if i+1 < len(order) {
			time.Sleep(time.Duration(rand.IntN(1500)) * time.Millisecond)
		}
	}
	s.learnMACs(t)
	leader := s.waitStable(t, "cold start", lbs, 90*time.Second)
	formed := time.Since(started)
	t.Logf("+%s: stable, leader %s", formed.Round(time.Millisecond), leader)

	// Every node's `vipd members` must agree; followers learn the holder
	// by gossip, so give them a few seconds to converge.
	var out string
	waitFor(t, 10*time.Second, "vipd members on every node shows the formed cluster", func() error {
		var err error
		if out, err = e.cli(leader, "members"); err != nil {
			return err
		}
		if !strings.Contains(out, leader+" *") || strings.Count(out, "alive") != 3 || strings.Count(out, "holder") != 1 {
			return fmt.Errorf("vipd members table on %s: want 3 alive, %s marked leader (*) and one holder:\n%s", leader, leader, out)
		}
		for _, n := range lbs {
			js, err := e.cli(n, "members", "-format", "json")
			if err != nil {
				return err
			}
			var m members
			if err := jsonUnmarshal(js, &m); err != nil {
				return fmt.Errorf("vipd members -format json on %s: %v\n%s", n, err, js)
			}
			leaders, holders, alive := 0, 0, 0
			for _, x := range m.Members {
				if x.Leader {
					leaders++
				}
				if x.VIPHeld {
					holders++
				}
				if x.Status == "alive" {
					alive++
				}
			}
			if len(m.Members) != 3 || alive != 3 || leaders != 1 || m.Leader != leader || m.VIPHolder != leader || holders != 1 {
				return fmt.Errorf("vipd members on %s: %d members, %d alive, %d leaders, leader %q, holder %q (%d marked), want 3, 3, 1, %s, %s, 1",
					n, len(m.Members), alive, leaders, m.Leader, m.VIPHolder, holders, leader, leader)
			}
		}
		return nil
	})
	t.Logf("vipd members on %s:\n%s", leader, out)
	if _, err := e.cli(leader, "status"); err != nil {
		t.Error(err)
	}
	s.record(result{scenario: "01 cold start → VIP served", outage: formed, recovered: true,
		note: "first node's start (random order, random delays) to a stable cluster"})
}

// scenarios 2 and 6: docker kill of the leader; another node serves the VIP;
// the killed node restarted rejoins as a follower and the VIP stays put.
func scenarioKillLeader(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, "before the kill", lbs, 30*time.Second)
		from := time.Now()
		e.mustDocker(t, "kill", e.container(leader))
		next := s.waitStable(t, "after killing leader "+leader, others(leader), 30*time.Second)
		s.measure(t, "02 leader killed (docker kill)", from, crashBound, "")

		restarted := time.Now()
		e.mustDocker(t, "start", e.container(leader))
		after := s.waitStable(t, "after restarting "+leader, lbs, 30*time.Second)
		if after != next {
			t.Errorf("after %s rejoined, leader is %s, want %s to keep it (no preemption)%s", leader, after, next, s.leaderEvents(from))
		}
		time.Sleep(2 * time.Second) // watch for a late flap back
		if l, err := s.stable(t, lbs); err != nil || l != next {
			t.Errorf("2 s after %s rejoined: leader %q (%v), want %s%s", leader, l, err, next, s.leaderEvents(from))
		}
		s.measure(t, "06 killed node restarted, rejoins", restarted, noOutageBound, "")
	}
}

// scenario 3: docker stop of the leader (SIGTERM: leadership transfer, VIP
// released first) gives a near-zero outage, and vipd exits 0.
func scenarioGracefulStop(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, "before the stop", lbs, 30*time.Second)
		from := time.Now()
		stopped := make(chan error, 1)
		go func() { _, err := e.docker("stop", "-t", "20", e.container(leader)); stopped <- err }()
		s.waitStable(t, "after stopping leader "+leader, others(leader), 30*time.Second)
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		s.measure(t, "03 leader stopped (docker stop)", from, gracefulBound, "")
		if code := e.mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", e.container(leader)); code != "0" {
			t.Errorf("vipd on %s exited %s after SIGTERM, want 0", leader, code)
		}
		e.mustDocker(t, "start", e.container(leader))
	}
	s.waitStable(t, "after the last restart", lbs, 30*time.Second)
}

// scenario 4: all upstreams unreachable from the leader only: the VIP moves
// to a healthy node within the -fall detection time.
func scenarioUnhealthy(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, "before blocking the upstreams", lbs, 30*time.Second)
		from := time.Now()
		if err := e.blockUpstreams(leader, true); err != nil {
			t.Fatal(err)
		}
		next := ""
		waitFor(t, 30*time.Second, "VIP on a healthy node after blocking "+leader+"'s upstreams", func() error {
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
		if l := s.waitStable(t, "after unblocking "+leader+"'s upstreams", lbs, 30*time.Second); l != next {
			t.Errorf("after %s's upstreams came back, leader is %s, want %s (no flap back)%s", leader, l, next, s.leaderEvents(from))
		}
	}
}

// scenario 5: the leader cut off its peers (clients still reach it) releases
// the VIP; the majority takes it; after healing it does not flap back.
func scenarioPartition(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, "before the partition", lbs, 30*time.Second)
		from := time.Now()
		if err := e.cut(leader); err != nil {
			t.Fatal(err)
		}
		next := s.waitStable(t, "after cutting "+leader+" off its peers", others(leader), 30*time.Second)
		waitFor(t, 5*time.Second, "cut-off "+leader+" releases the VIP", func() error {
			st, err := e.status(leader)
			if err != nil {
				return err
			}
			if st.VIPHeld {
				return fmt.Errorf("cut-off old leader %s still holds the VIP (role %s)", leader, st.Role)
			}
			return nil
		})
		time.Sleep(time.Until(from.Add(5 * time.Second))) // hold the partition 5 s, as the VIP issue's target
		// The majority's leader must have kept the VIP through the partition;
		// a change here is not caused by the heal.
		if l, err := s.stable(t, others(leader)); err != nil || l != next {
			t.Errorf("during the partition of %s: leader %q (%v), want %s to keep it%s", leader, l, err, next, s.leaderEvents(from))
			next = l
		}
		healed := time.Now()
		if err := e.heal(leader); err != nil {
			t.Fatal(err)
		}
		if l := s.waitStable(t, "after healing "+leader+"'s partition", lbs, 30*time.Second); l != next {
			t.Errorf("after healing %s, leader is %s, want %s (no flap back)%s", leader, l, next, s.leaderEvents(healed))
		}
		t.Logf("healed partition: %s alive again in the leader's view after %s", leader, time.Since(healed).Round(time.Millisecond))
		time.Sleep(3 * time.Second) // watch for a late flap back
		if l, err := s.stable(t, lbs); err != nil || l != next {
			t.Errorf("3 s after healing %s: leader %q (%v), want %s%s", leader, l, err, next, s.leaderEvents(healed))
		}
		s.measure(t, "05 leader cut off its peers 5 s, healed", from, crashBound, "includes the heal")
	}
}

// scenario 7: docker restart of every node in turn: the VIP always comes back.
func scenarioRolling(t *testing.T, s *suite) {
	e := s.env
	s.waitStable(t, "before the rolling restart", lbs, 30*time.Second)
	from := time.Now()
	for _, n := range lbs {
		e.mustDocker(t, "restart", "-t", "20", e.container(n))
		s.waitStable(t, "after restarting "+n, lbs, 30*time.Second)
	}
	s.measure(t, "07 rolling restart lb1, lb2, lb3", from, gracefulBound, "longest gap over all three restarts")
}

// scenario 8: two of three down: the survivor holds no VIP (no quorum) and
// says so in `vipd members`; one back: the VIP is served again.
func scenarioNoQuorum(t *testing.T, s *suite) {
	e := s.env
	leader := s.waitStable(t, "before killing two nodes", lbs, 30*time.Second)
	followers := others(leader)
	e.mustDocker(t, "kill", e.container(followers[0]))
	e.mustDocker(t, "kill", e.container(followers[1]))
	waitFor(t, 30*time.Second, "survivor "+leader+" drops the VIP", func() error {
		st, err := e.status(leader)
		if err != nil {
			return err
		}
		if st.VIPHeld {
			return fmt.Errorf("%s still holds the VIP without a quorum (role %s)", leader, st.Role)
		}
		return nil
	})
	quiet := time.Now()
	time.Sleep(time.Second)
	if a := s.arp.Report(quiet, time.Now()); len(a.Answers) > 0 {
		t.Errorf("VIP still answered on ARP without a quorum: %s", s.answers(t, a))
	}
	if o := s.probe.Measure(quiet, time.Now()); o.Recovered {
		t.Errorf("VIP still serving clients without a quorum (answers by %v)", o.Backends)
	}
	// What an operator sees once gossip has noticed the two dead nodes
	// (memberlist's suspicion timeout): both dead, no leader, no holder,
	// and a note saying that the quorum is missing.
	var m members
	waitFor(t, 20*time.Second, "survivor "+leader+" sees "+strings.Join(followers, " and ")+" dead", func() error {
		var err error
		if m, err = e.members(leader); err != nil {
			return err
		}
		for _, x := range m.Members {
			if contains(followers, x.Name) && x.Status != "dead" {
				return fmt.Errorf("%s is %s in %s's view (note %q)", x.Name, x.Status, leader, m.Note)
			}
		}
		return nil
	})
	if m.Leader != "" || m.VIPHolder != "" || !strings.Contains(m.Note, "quorum") {
		t.Errorf("survivor's members: leader %q, holder %q, note %q; want no leader, no holder and a note on the missing quorum", m.Leader, m.VIPHolder, m.Note)
	}
	out, err := e.cli(leader, "members")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vipd members on the survivor %s:\n%s", leader, out)
	if strings.Contains(out, "holder") || strings.Count(out, "dead") != 2 || !strings.Contains(out, "quorum") {
		t.Errorf("vipd members on the survivor %s: want two dead nodes, no holder and a note explaining the missing quorum:\n%s", leader, out)
	}
	back := time.Now()
	e.mustDocker(t, "start", e.container(followers[0]))
	s.waitStable(t, "after starting "+followers[0]+" (quorum back)", []string{leader, followers[0]}, 30*time.Second)
	s.measure(t, "08 quorum back (2 of 3) → VIP served", back, quorumBound, "from the start of the 2nd node")
	e.mustDocker(t, "start", e.container(followers[1]))
	s.waitStable(t, "after starting "+followers[1], lbs, 30*time.Second)
}

// scenario 9: connections through an unaffected node's proxy survive a
// failover elsewhere, both ways round.
func scenarioConnections(t *testing.T, s *suite) {
	e := s.env
	leader := s.waitStable(t, "before 9a", lbs, 30*time.Second)
	follower := others(leader)[0]

	// a) long-lived connections to a follower's own address; the leader is killed.
	conns := dialKeepAlive(t, net.JoinHostPort(e.lbIP(follower), "6443"), 3)
	from := time.Now()
	e.mustDocker(t, "kill", e.container(leader))
	n := 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); n++ {
		conns.getAll(t, "to "+follower+" while "+leader+" is killed")
		time.Sleep(100 * time.Millisecond)
	}
	s.waitStable(t, "after killing leader "+leader, others(leader), 30*time.Second)
	conns.getAll(t, "to "+follower+" after the failover")
	t.Logf("9a: 3 connections through %s answered %d rounds of requests while leader %s was killed and the VIP moved", follower, n+1, leader)
	s.measure(t, "09a kill leader, conns to a follower", from, crashBound, "3 keep-alive conns via the follower survived")
	e.mustDocker(t, "start", e.container(leader))
	leader = s.waitStable(t, "after restarting "+leader, lbs, 30*time.Second)

	// b) long-lived connections through the VIP (to the leader); a follower is killed.
	vipConns := dialKeepAlive(t, net.JoinHostPort(e.vip().String(), "6443"), 3)
	victim := others(leader)[0]
	from = time.Now()
	e.mustDocker(t, "kill", e.container(victim))
	n = 0
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); n++ {
		vipConns.getAll(t, "through the VIP while follower "+victim+" is killed")
		time.Sleep(100 * time.Millisecond)
	}
	if l, err := s.stable(t, others(victim)); err != nil || l != leader {
		t.Errorf("after killing follower %s: leader %q (%v), want %s unchanged%s", victim, l, err, leader, s.leaderEvents(from))
	}
	t.Logf("9b: 3 connections through the VIP (%s) answered %d rounds while follower %s was killed", leader, n, victim)
	s.measure(t, "09b kill follower, conns via the VIP", from, noOutageBound, "3 keep-alive conns via the VIP survived")
	e.mustDocker(t, "start", e.container(victim))
	s.waitStable(t, "after restarting "+victim, lbs, 30*time.Second)
}

// scenario 10: the leader's container paused (a hung process on a live
// kernel): another node serves the VIP; the hung node's kernel must not
// answer ARP for it meanwhile, nor its process after it resumes. The table's
// two-MAC column is the time two MACs answered ARP for the VIP.
func scenarioPause(t *testing.T, s *suite) {
	e := s.env
	for i := 0; i < trials(); i++ {
		leader := s.waitStable(t, "before the pause", lbs, 30*time.Second)
		from := time.Now()
		e.mustDocker(t, "pause", e.container(leader))
		next := s.waitStable(t, "after pausing leader "+leader, others(leader), 30*time.Second)
		s.measure(t, "10 leader paused (docker pause)", from, crashBound, "")
		from = time.Now()
		e.mustDocker(t, "unpause", e.container(leader))
		l := s.waitStable(t, "after unpausing "+leader, lbs, 30*time.Second)
		time.Sleep(2 * time.Second) // the resumed process must not answer ARP for the VIP, nor flap
		if l != next {
			// A flap back is the resumed node leading again. A third node leading because the new leader
			// lost its 50 ms lease (the machine stalled it: its log says so) is the host's load, not the
			// resumed process's doing; it is noted, and the outage is still measured below.
			var lost []string
			for _, d := range stepDownsSince(e, from) {
				if strings.HasPrefix(d, next+" ") {
					lost = append(lost, d)
				}
			}
			if l == leader || len(lost) == 0 {
				t.Errorf("after unpausing %s, leader is %s, want %s%s", leader, l, next, s.leaderEvents(from))
			} else {
				t.Logf("NOTE: after unpausing %s, %s leads, not %s: %s lost its lease (host stall) at %v", leader, l, next, next, lost)
			}
		}
		s.measure(t, "10 paused leader resumed", from, noOutageBound, "")
	}
}

// scenario 11: the crash scenario with gratuitous ARP off: the host keeps
// sending to the dead holder's MAC until its neighbour entry expires.
func scenarioNoGARP(t *testing.T, s *suite) {
	e := s.env
	e.garp = false
	leader := s.recreate(t)
	from := time.Now()
	e.mustDocker(t, "kill", e.container(leader))
	waitFor(t, noGARPBound, "VIP served by a survivor without GARP", func() error {
		if !s.probe.Settled(time.Now(), settleQuiet) {
			return fmt.Errorf("the VIP does not answer steadily")
		}
		return nil
	})
	s.waitStable(t, "after killing leader "+leader+" without GARP", others(leader), 30*time.Second)
	note := "the host's neighbour cache must expire"
	if d, ok := s.medianOf("02 leader killed (docker kill)"); ok {
		note += fmt.Sprintf("; with GARP (02): median %s", d.Round(time.Millisecond))
	}
	s.measure(t, "11 leader killed, gratuitous ARP off", from, noGARPBound, note)
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
