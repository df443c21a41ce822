package attack

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/rogue"
)

const (
	// stableHold is how long the cluster must have been in steady state before the attack starts;
	// betweenHold before each later phase (it was steady already: this checks it still is and takes the
	// phase's baseline).
	stableHold  = 3 * time.Second
	betweenHold = time.Second
	// floodRate is the frames per second of each kind (malformed, foreign): issue 8's target flood.
	floodRate = 20000
	// floodFor is how long the client resolves the VIP under the flood.
	floodFor = 4 * time.Second
	// gossipFor is how long the rogue gossip nodes stay; an accepted one shows up in every node's member
	// list within milliseconds of its join (the insecure run measures it).
	gossipFor = 3 * time.Second
	// settleFor is how long the observers keep watching after the Raft attack, for effects that land late
	// (an election the last RPC started, the VIP's hand-over).
	settleFor = 2 * time.Second
	// minAnswered is the share of the client's ARP requests the responder must answer during the flood.
	minAnswered = 0.99
	// maxTries bounds the attempts of one phase: a phase is tried again only when the machine, not the
	// attack, moved the cluster (attributed); a real change fails at once.
	maxTries = 3
	// minStall is the shortest probe stall that explains a lease step-down: the 50 ms lease less the 10 ms
	// heartbeat interval and scheduling slack.
	minStall = 25 * time.Millisecond
	// consequences is how long after a step-down the changes it brings (the VIP released, an election, the
	// VIP acquired by the new leader once healthy) are counted as its own.
	consequences = 3 * time.Second
)

// attempt is one try of one phase of the attack, from a steady state.
type attempt struct {
	phase         string
	label         string // what the observers recorded during it
	start, end    time.Time
	before, after view
	leaderMAC     string
	arp           arpStats // the client's requests during the attempt
	arpFlood      arpStats // those made under the flood
	events        []event
	flood         rogue.FloodReport
	raft          []rpcResult
	gossip        gossipReport
	rogueSeenIn   time.Duration // how long after the join a rogue gossip node was first listed (0 = never)
}

func (a attempt) clean() bool { return len(a.events) == 0 && a.after.equal(a.before) }

// outcome is everything one run of the suite saw.
type outcome struct {
	mode          security
	attempts      []attempt
	events        []event // every change the observers saw, in and between phases
	unexplained   []event // the changes no machine stall explains
	explained     []string
	stalls        []stall
	stepDowns     []stepDown
	refusedBefore map[string]uint64
	refusedAfter  map[string]uint64
	adminRefused  int
	running       error
	took          time.Duration
}

// last returns the last attempt of phase; it is the clean one if any is.
func (o outcome) last(phase string) attempt {
	for _, a := range slices.Backward(o.attempts) {
		if a.phase == phase {
			return a
		}
	}
	return attempt{}
}

// within reports whether an observer's label was recorded during the attempt labelled label.
func within(phase, label string) bool { return phase == label || strings.HasPrefix(phase, label+": ") }

// suite runs the phases of the attack against one cluster.
type suite struct {
	t       *testing.T
	r       *rig
	ph      *phases
	client  *arpClient
	probe   *stallWatch
	views   *changeLog
	holders *changeLog
	o       *outcome
}

// attack runs the whole suite against a fresh cluster of the given mode: (d) the admin API, (c) the ARP
// flood, (b) gossip, (a) Raft — the one that wrecks an insecure cluster last, so the other phases' effects
// are seen on their own — with the observers running throughout. With a key, a phase during which the
// cluster changed is tried again (from a new steady state) only if a machine stall explains the change.
func attack(t *testing.T, mode security) outcome {
	start := time.Now()
	r := startCluster(t, mode)
	s := &suite{t: t, r: r, ph: &phases{cur: "forming"}, o: &outcome{mode: mode}}
	s.probe = startStallProbe(t, r.client)
	base := r.waitStable(stableHold, 60*time.Second)
	t.Logf("%s cluster stable after %v: %v", mode, time.Since(start).Round(time.Millisecond), base)
	s.o.refusedBefore = r.refused()
	s.client = startARPClient(t, r, s.ph)
	holders, holderLog := watchHolders(t, r, s.ph, base.holders)
	views, viewLog := watchViews(t, r, s.ph, base)
	s.views, s.holders = viewLog, holderLog

	s.phase("admin API", base, func(a *attempt) { s.o.adminRefused += adminAttack(t, r, a.before.leader) })
	s.phase("ARP flood", view{}, s.flood)
	s.phase("gossip", view{}, s.gossip)
	s.phase("Raft", view{}, s.raft)

	s.ph.set("done")
	s.client.w.stop()
	holders.stop()
	views.stop()
	s.probe.stop(t)
	o := s.o
	for i := range o.attempts {
		a := &o.attempts[i]
		a.arp = s.client.stats(func(p string) bool { return within(p, a.label) })
		a.arpFlood = s.client.stats(func(p string) bool { return p == a.label+": flooding" })
	}
	o.events = append(viewLog.list(), holderLog.list()...)
	slices.SortFunc(o.events, func(a, b event) int { return a.at.Compare(b.at) })
	o.stalls, o.stepDowns = s.probe.all(), r.stepDowns()
	o.unexplained, o.explained = explain(o.events, o.stepDowns, s.probe)
	o.refusedAfter = r.refused()
	o.running = r.running()
	o.took = time.Since(start)
	o.log(t)
	return *o
}

// phase runs one phase of the attack from a steady state (base, or one it waits for) until an attempt is
// clean, the cluster changed for a reason the machine does not explain, or maxTries attempts were disturbed.
// An insecure cluster gets one attempt: there, changes are what the run is looking for.
func (s *suite) phase(name string, base view, run func(a *attempt)) {
	for try := 1; try <= maxTries; try++ {
		s.ph.set("steady")
		switch {
		case s.o.mode == insecure && base.terms == nil:
			// Not necessarily steady: the earlier phases' attacks may have succeeded (a rogue voter).
			var err error
			if base, err = s.r.look(); err != nil {
				s.t.Fatalf("%s: before the attack: %v", name, err)
			}
		case try > 1:
			base = s.r.waitStable(stableHold, 60*time.Second)
		case base.terms == nil:
			base = s.r.waitStable(betweenHold, 60*time.Second)
		}
		a := attempt{phase: name, label: fmt.Sprintf("%s #%d", name, try), before: base}
		if n := s.r.node(base.leader); n != nil {
			a.leaderMAC = n.mac.String()
		}
		s.ph.set(a.label)
		a.start = time.Now()
		run(&a)
		a.end = time.Now()
		var err error
		if a.after, err = s.r.look(); err != nil {
			s.t.Errorf("%s: after the attack: %v", a.label, err)
		}
		if !a.after.equal(a.before) {
			time.Sleep(200 * time.Millisecond) // the observers poll every 10 and 100 ms: let them record what look saw
		}
		until := time.Now()
		for _, l := range []*changeLog{s.views, s.holders} {
			for _, e := range l.list() {
				if within(e.phase, a.label) || !e.at.Before(a.start) && !e.at.After(until) {
					a.events = append(a.events, e)
				}
			}
		}
		s.o.attempts = append(s.o.attempts, a)
		if a.clean() || s.o.mode == insecure {
			return
		}
		if bad, _ := explain(a.events, s.r.stepDowns(), s.probe); len(bad) > 0 || len(a.events) == 0 {
			return // a change the machine does not explain: the verdict fails on it
		}
		s.t.Logf("NOTE: %s: the cluster changed after a stall of the machine, not of the attack's making; trying again from a steady state", a.label)
	}
}

// explain sorts changes into those a machine stall explains — a lease step-down of a leader shortly after
// the stall probe was not scheduled for minStall or more, and the changes that step-down brings within
// consequences — and those it does not.
func explain(events []event, downs []stepDown, probe *stallWatch) (unexplained []event, explained []string) {
	var causes []stepDown
	for i, d := range downs {
		if i > 0 && d == downs[i-1] {
			continue // Raft's step-down and the VIP loop's, logged in the same millisecond
		}
		if st := probe.between(d.at.Add(-150*time.Millisecond), d.at.Add(50*time.Millisecond)); slices.ContainsFunc(st, func(s stall) bool {
			return s.Length >= minStall
		}) {
			causes = append(causes, d)
			explained = append(explained, fmt.Sprintf("%s stepped down at %s after the probe stalled %v", d.node,
				d.at.Format("15:04:05.000"), st))
		}
	}
	for _, e := range events {
		if !slices.ContainsFunc(causes, func(d stepDown) bool {
			return !e.at.Before(d.at.Add(-20*time.Millisecond)) && e.at.Before(d.at.Add(consequences))
		}) {
			unexplained = append(unexplained, e)
		}
	}
	return unexplained, explained
}

func (s *suite) flood(a *attempt) {
	fl := startAttacker(s.t, s.r.attacker, roleFlood, rogue.ARPFlood{Iface: "eth0", VIP: mustAddr(vipAddr), Rate: floodRate,
		Duration: time.Minute}, nil)
	fl.waitReady(s.t, 30*time.Second)
	floodStart := time.Now()
	s.ph.set(a.label + ": flooding") // from here on, the client's requests are made under the flood
	sleepUntil(floodStart.Add(floodFor))
	s.ph.set(a.label + ": stopping") // before the flood stops: no request made after the stop counts as made under it
	fl.finish(s.t, true, 30*time.Second, &a.flood)
}

func (s *suite) gossip(a *attempt) {
	var nodes []string
	for _, n := range s.r.nodes {
		nodes = append(nodes, n.ip+":"+gossipPort)
	}
	gs := startAttacker(s.t, s.r.attacker, roleGossip, gossipSpec{Nodes: nodes, Bind: attackerIP, RaftAddr: attackerIP + ":" + raftPort,
		Rogues:   []rogueSpec{{Name: "rogue-plain", Port: 7946}, {Name: "rogue-wrong-key", Port: 7956, Key: randomKey(s.t)}},
		Duration: time.Minute}, nil)
	gs.waitReady(s.t, 30*time.Second)
	joined := time.Now()
	for time.Since(joined) < gossipFor {
		if a.rogueSeenIn == 0 && s.r.listsStranger() {
			a.rogueSeenIn = time.Since(joined)
		}
		time.Sleep(50 * time.Millisecond) // polling the member lists for the length of the phase
	}
	gs.finish(s.t, true, 30*time.Second, &a.gossip)
}

func (s *suite) raft(a *attempt) {
	var targets []target
	for _, n := range s.r.nodes {
		targets = append(targets, target{Name: n.name, Addr: n.ip + ":" + raftPort})
	}
	ra := startAttacker(s.t, s.r.attacker, roleRaft, raftSpec{Targets: targets, WrongKey: randomKey(s.t),
		ForeignID: "intruder", ForeignAddr: attackerIP + ":" + raftPort}, nil)
	ra.finish(s.t, false, 2*time.Minute, &a.raft)
	sleepUntil(time.Now().Add(settleFor))
}

// sleepUntil waits until the given instant: the length of an attack phase, not a wait for a condition.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// listsStranger reports whether any node lists a member that is not one of the three.
func (r *rig) listsStranger() bool {
	for _, n := range r.nodes {
		ms, err := n.members()
		if err != nil {
			continue
		}
		for _, m := range ms.Members {
			if r.node(m.Name) == nil {
				return true
			}
		}
	}
	return false
}

func (o outcome) log(t *testing.T) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s cluster under attack, %v in all (cluster start included):\n", o.mode, o.took.Round(time.Millisecond))
	for _, a := range o.attempts {
		fmt.Fprintf(&b, "  [%s] %v, clean %v; client %v\n", a.label, a.end.Sub(a.start).Round(time.Millisecond), a.clean(), a.arp)
		if !a.after.equal(a.before) {
			fmt.Fprintf(&b, "    before: %v\n    after:  %v\n", a.before, a.after)
		}
		if a.flood.Elapsed > 0 {
			fmt.Fprintf(&b, "    flood: %d malformed + %d foreign frames in %v (%.0f frames/s, %d send errors); client under it: %v\n",
				a.flood.Malformed, a.flood.Foreign, a.flood.Elapsed.Round(time.Millisecond), a.flood.FramesPerSecond(), a.flood.Errors,
				a.arpFlood)
		}
		for _, g := range a.gossip.Rogues {
			fmt.Fprintf(&b, "    gossip %v\n", g)
		}
		if a.rogueSeenIn > 0 {
			fmt.Fprintf(&b, "    a rogue was listed as a member %v after its join\n", a.rogueSeenIn.Round(time.Millisecond))
		}
		answered := 0
		for _, x := range a.raft {
			if x.Err == "" {
				answered++
				fmt.Fprintf(&b, "    Raft: %v\n", x)
			}
		}
		if len(a.raft) > 0 {
			fmt.Fprintf(&b, "    Raft: %d of %d RPCs answered\n", answered, len(a.raft))
		}
	}
	fmt.Fprintf(&b, "  admin API: %d browser requests refused; Raft refusals counted %v -> %v\n", o.adminRefused, o.refusedBefore, o.refusedAfter)
	for _, e := range o.events {
		fmt.Fprintf(&b, "  change: %v\n", e)
	}
	for _, x := range o.explained {
		fmt.Fprintf(&b, "  explained: %s\n", x)
	}
	if n := len(o.stalls); n > 0 {
		fmt.Fprintf(&b, "  machine: %d stalls of the probe ≥ 20 ms, longest %v\n", n, o.stalls[:min(n, 5)])
	}
	fmt.Fprintf(&b, "  agents running: %v", o.running == nil)
	t.Log(b.String())
}

// TestAttackerCannotSteerKeyedCluster is issue 8's attacker suite against a cluster run as users run it,
// with a cluster key: nothing the stranger does moves anything or teaches it anything.
func TestAttackerCannotSteerKeyedCluster(t *testing.T) {
	requireSuite(t)
	o := attack(t, withKey)

	if o.running != nil {
		t.Errorf("agents stopped: %v", o.running)
	}
	for _, e := range o.unexplained {
		t.Errorf("the cluster changed, and no stall of the machine explains it: %v", e)
	}
	for _, p := range []string{"admin API", "ARP flood", "gossip", "Raft"} {
		a := o.last(p)
		if !a.clean() {
			t.Errorf("%s: no attempt left the cluster as it was (%d tried; the machine stalled: %v)", p, o.tries(p), o.stalls)
			continue
		}
		if len(a.arp.macs) > 1 || (len(a.arp.macs) == 1 && a.arp.macs[a.leaderMAC] == 0) {
			t.Errorf("%s: the client was answered from %v, want the leader's %s only", a.label, a.arp.macs, a.leaderMAC)
		}
		if p == "ARP flood" {
			checkFlood(t, a)
		}
	}
	for _, a := range o.attempts {
		for _, x := range a.raft {
			if x.Err == "" || x.learned() {
				t.Errorf("%s: Raft RPC answered: %v", a.label, x)
			}
		}
		for _, g := range a.gossip.Rogues {
			if g.Joined != 0 || len(g.Saw) != 0 {
				t.Errorf("%s: gossip rogue %s: join answered by %d nodes, it learned %v; want none", a.label, g.Name, g.Joined, g.Saw)
			}
		}
		if a.rogueSeenIn != 0 {
			t.Errorf("%s: a rogue gossip node was listed as a member %v after its join", a.label, a.rogueSeenIn)
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		// Each stranger's RPC is its own connection: 3 kinds × 6 RPCs reach each node, each refused.
		if got, want := o.refusedAfter[n]-o.refusedBefore[n], uint64(18*o.tries("Raft")); got < want {
			t.Errorf("%s counted %d refusals, want at least %d (%v -> %v)", n, got, want, o.refusedBefore, o.refusedAfter)
		}
	}
}

func (o outcome) tries(phase string) int {
	n := 0
	for _, a := range o.attempts {
		if a.phase == phase {
			n++
		}
	}
	return n
}

// TestAttackerSteersInsecureCluster is the control: the same stranger against a cluster run with -insecure.
// It must get somewhere — read the term, move the term or the leadership — or the refusals of the keyed run
// would prove nothing. What it got is logged: that is what -insecure gives away.
func TestAttackerSteersInsecureCluster(t *testing.T) {
	requireSuite(t)
	o := attack(t, insecure)

	raft := o.last("Raft")
	var learned []string
	for _, x := range raft.raft {
		if x.learned() {
			learned = append(learned, x.String())
		}
	}
	if len(learned) == 0 {
		t.Error("no Raft RPC learned anything from an insecure cluster: the attacks do not work, so the keyed run proves nothing")
	}
	termMoved, leaderMoved := false, raft.after.leader != raft.before.leader
	for n, term := range raft.after.terms {
		termMoved = termMoved || term != raft.before.terms[n]
	}
	if !termMoved && !leaderMoved {
		t.Errorf("the stranger's RPCs moved neither a term nor the leadership of an insecure cluster:\nbefore %v\nafter  %v", raft.before, raft.after)
	}
	// What does not depend on -insecure holds here too: the admin API's guard (adminAttack), the responder
	// under the flood (which comes before the Raft attack), the agents staying up.
	if a := o.last("ARP flood"); a.clean() {
		checkFlood(t, a)
	} else {
		t.Logf("NOTE: the cluster changed during the flood (the machine stalled: %v); its figures are not checked in the insecure run", o.explained)
	}
	if o.running != nil {
		t.Errorf("agents stopped: %v", o.running)
	}
	gossip := o.last("gossip")
	t.Logf("what -insecure gave away: %d RPCs answered (e.g. %s); term moved %v, leader %q -> %q, voters %v -> %v; a rogue gossip node listed after %v; %v",
		len(learned), first(learned), termMoved, raft.before.leader, raft.after.leader, raft.before.voters, raft.after.voters,
		gossip.rogueSeenIn.Round(time.Millisecond), gossip.gossip.Rogues)
}

func first(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[0]
}

// checkFlood fails a run whose client was not answered enough under the flood, or whose flood did not
// happen: under a quarter of the target rate the figure would mean little (the vip package's flood test
// measures the responder at the full rate; here the point is the whole agent under the whole attack).
func checkFlood(t *testing.T, a attempt) {
	t.Helper()
	if a.arpFlood.sent < 100 {
		t.Errorf("the client made only %d requests during the flood", a.arpFlood.sent)
	}
	if a.arpFlood.share() < minAnswered {
		t.Errorf("during the ARP flood the client got %v, want at least %.0f %% answered", a.arpFlood, 100*minAnswered)
	}
	if want := 2 * floodRate / 4; a.flood.FramesPerSecond() < float64(want) {
		t.Errorf("the attacker sent only %.0f frames/s, under a quarter of the %d it aims at: the machine is too busy for this run to mean anything",
			a.flood.FramesPerSecond(), 2*floodRate)
	}
	if a.flood.Elapsed < floodFor {
		t.Errorf("the flood lasted %v, less than the %v the client was asking", a.flood.Elapsed, floodFor)
	}
}

func requireSuite(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("the attacker suite runs a cluster for about half a minute; skipped in -short mode")
	}
}
