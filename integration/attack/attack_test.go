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
	// stableHold is how long the cluster must have been in steady state before the attack starts.
	stableHold = 3 * time.Second
	// floodRate is the frames per second of each kind (malformed, foreign): issue 8's target flood.
	floodRate = 20000
	// floodFor is how long the client resolves the VIP under the flood.
	floodFor = 4 * time.Second
	// gossipFor is how long the rogue gossip nodes stay; an accepted one shows up in every node's member
	// list within milliseconds of its join (the insecure run measures it).
	gossipFor = 3 * time.Second
	// settleFor is how long the observers keep watching after the last attack, for effects that land late
	// (an election the last RPC started, the VIP's hand-over).
	settleFor = 2 * time.Second
	// minAnswered is the share of the client's ARP requests the responder must answer during the flood.
	minAnswered = 0.99
)

// outcome is everything one run of the suite saw.
type outcome struct {
	before, after view
	leaderMAC     string
	arp           arpStats // every request of the client, all phases
	arpFlood      arpStats // the requests made during the flood
	flood         rogue.FloodReport
	holderEvents  []event
	viewEvents    []event
	raft          []rpcResult
	gossip        gossipReport
	rogueSeenIn   time.Duration // how long after the join a rogue gossip node was first listed (0 = never)
	refusedBefore map[string]uint64
	refusedAfter  map[string]uint64
	adminRefused  int
	running       error
	took          time.Duration
}

// attack runs the whole suite against a fresh cluster of the given mode: (d) the admin API, (c) the ARP
// flood, (b) gossip, (a) Raft — the one that wrecks an insecure cluster last, so the other phases' effects
// are seen on their own — with the observers running throughout.
func attack(t *testing.T, mode security) outcome {
	start := time.Now()
	r := startCluster(t, mode)
	base := r.waitStable(stableHold, 60*time.Second)
	t.Logf("%s cluster stable after %v: %v", mode, time.Since(start).Round(time.Millisecond), base)
	o := outcome{before: base, leaderMAC: r.node(base.leader).mac.String(), refusedBefore: r.refused()}
	ph := &phases{cur: "steady"}
	client := startARPClient(t, r, ph)
	holders, holderLog := watchHolders(t, r, ph, base.holders)
	views, viewLog := watchViews(t, r, ph, base)

	ph.set("admin API")
	o.adminRefused = adminAttack(t, r, base.leader)

	ph.set("ARP flood")
	fl := startAttacker(t, r.attacker, roleFlood, rogue.ARPFlood{Iface: "eth0", VIP: mustAddr(vipAddr), Rate: floodRate,
		Duration: time.Minute})
	fl.waitReady(t, 30*time.Second)
	floodStart := time.Now()
	sleepUntil(floodStart.Add(floodFor))
	ph.set("after the flood") // before the flood stops: no request made after the stop counts as made under it
	fl.finish(t, true, 30*time.Second, &o.flood)

	ph.set("gossip")
	var nodes []string
	for _, n := range r.nodes {
		nodes = append(nodes, n.ip+":"+gossipPort)
	}
	gs := startAttacker(t, r.attacker, roleGossip, gossipSpec{Nodes: nodes, Bind: attackerIP, RaftAddr: attackerIP + ":" + raftPort,
		Rogues:   []rogueSpec{{Name: "rogue-plain", Port: 7946}, {Name: "rogue-wrong-key", Port: 7956, Key: randomKey(t)}},
		Duration: time.Minute})
	gs.waitReady(t, 30*time.Second)
	joined := time.Now()
	for time.Since(joined) < gossipFor {
		if o.rogueSeenIn == 0 && r.listsStranger() {
			o.rogueSeenIn = time.Since(joined)
		}
		time.Sleep(50 * time.Millisecond) // polling the member lists for the length of the phase
	}
	gs.finish(t, true, 30*time.Second, &o.gossip)

	ph.set("Raft")
	var targets []target
	for _, n := range r.nodes {
		targets = append(targets, target{Name: n.name, Addr: n.ip + ":" + raftPort})
	}
	ra := startAttacker(t, r.attacker, roleRaft, raftSpec{Targets: targets, WrongKey: randomKey(t),
		ForeignID: "intruder", ForeignAddr: attackerIP + ":" + raftPort})
	ra.finish(t, false, 2*time.Minute, &o.raft)

	ph.set("settle")
	sleepUntil(time.Now().Add(settleFor))
	client.w.stop()
	holders.stop()
	views.stop()

	o.arp, o.arpFlood = client.stats(), client.stats("ARP flood")
	o.holderEvents, o.viewEvents = holderLog.list(), viewLog.list()
	o.refusedAfter = r.refused()
	o.running = r.running()
	var err error
	if o.after, err = r.look(); err != nil {
		t.Errorf("after the attack: %v", err)
	}
	o.took = time.Since(start)
	o.log(t, mode)
	return o
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

func (o outcome) log(t *testing.T, mode security) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "%s cluster under attack, %v in all:\n", mode, o.took.Round(time.Millisecond))
	fmt.Fprintf(&b, "  before: %v\n  after:  %v\n", o.before, o.after)
	fmt.Fprintf(&b, "  admin API: %d browser requests refused\n", o.adminRefused)
	fmt.Fprintf(&b, "  ARP flood: %d malformed + %d foreign frames in %v (%.0f frames/s, %d send errors); client during the flood: %v\n",
		o.flood.Malformed, o.flood.Foreign, o.flood.Elapsed.Round(time.Millisecond), o.flood.FramesPerSecond(), o.flood.Errors, o.arpFlood)
	fmt.Fprintf(&b, "  client over the whole attack: %v (leader's MAC %s)\n", o.arp, o.leaderMAC)
	for _, g := range o.gossip.Rogues {
		fmt.Fprintf(&b, "  gossip %s: join answered by %d (%s), it learned %v\n", g.Name, g.Joined, g.JoinErr, g.Saw)
	}
	if o.rogueSeenIn > 0 {
		fmt.Fprintf(&b, "  a rogue was listed as a member %v after its join\n", o.rogueSeenIn.Round(time.Millisecond))
	}
	answered := 0
	for _, x := range o.raft {
		if x.Err == "" {
			answered++
			fmt.Fprintf(&b, "  Raft: %v\n", x)
		}
	}
	fmt.Fprintf(&b, "  Raft: %d of %d RPCs answered; refusals counted %v -> %v\n", answered, len(o.raft), o.refusedBefore, o.refusedAfter)
	for _, e := range o.viewEvents {
		fmt.Fprintf(&b, "  view: %v\n", e)
	}
	for _, e := range o.holderEvents {
		fmt.Fprintf(&b, "  holder: %v\n", e)
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
	if !o.after.equal(o.before) {
		t.Errorf("the cluster changed:\nbefore %v\nafter  %v", o.before, o.after)
	}
	for _, e := range o.viewEvents {
		t.Errorf("a node's view changed during the attack: %v", e)
	}
	for _, e := range o.holderEvents {
		t.Errorf("the VIP moved during the attack: %v", e)
	}
	if len(o.arp.macs) != 1 || o.arp.macs[o.leaderMAC] == 0 {
		t.Errorf("the client was answered from %v, want the leader's %s only", o.arp.macs, o.leaderMAC)
	}
	checkFlood(t, o)
	for _, x := range o.raft {
		if x.Err == "" || x.learned() {
			t.Errorf("Raft RPC answered: %v", x)
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		// Each stranger's RPC is its own connection: 3 kinds × 6 RPCs reach each node, each refused.
		if got := o.refusedAfter[n] - o.refusedBefore[n]; got < 18 {
			t.Errorf("%s counted %d refusals, want at least 18 (%v -> %v)", n, got, o.refusedBefore, o.refusedAfter)
		}
	}
	for _, g := range o.gossip.Rogues {
		if g.Joined != 0 || len(g.Saw) != 0 {
			t.Errorf("gossip rogue %s: join answered by %d nodes, it learned %v; want none", g.Name, g.Joined, g.Saw)
		}
	}
	if o.rogueSeenIn != 0 {
		t.Errorf("a rogue gossip node was listed as a member %v after its join", o.rogueSeenIn)
	}
}

// TestAttackerSteersInsecureCluster is the control: the same stranger against a cluster run with -insecure.
// It must get somewhere — read the term, move the term or the leadership — or the refusals of the keyed run
// would prove nothing. What it got is logged: that is what -insecure gives away.
func TestAttackerSteersInsecureCluster(t *testing.T) {
	requireSuite(t)
	o := attack(t, insecure)

	var learned []string
	for _, x := range o.raft {
		if x.learned() {
			learned = append(learned, x.String())
		}
	}
	if len(learned) == 0 {
		t.Error("no Raft RPC learned anything from an insecure cluster: the attacks do not work, so the keyed run proves nothing")
	}
	termMoved, leaderMoved := false, o.after.leader != o.before.leader
	for n, term := range o.after.terms {
		termMoved = termMoved || term != o.before.terms[n]
	}
	for _, e := range o.viewEvents {
		termMoved = termMoved || (e.phase == "Raft" || e.phase == "settle") && strings.Contains(e.what, "term")
	}
	if !termMoved && !leaderMoved {
		t.Errorf("the stranger's RPCs moved neither a term nor the leadership of an insecure cluster:\nbefore %v\nafter  %v", o.before, o.after)
	}
	// What does not depend on -insecure holds here too: the admin API's guard, the responder under the
	// flood (which comes before the Raft attack), the agents staying up.
	checkFlood(t, o)
	if o.running != nil {
		t.Errorf("agents stopped: %v", o.running)
	}
	t.Logf("what -insecure gave away: %d RPCs answered (e.g. %s); term moved %v, leader %q -> %q, voters %v -> %v; a rogue gossip node listed after %v, learning %v",
		len(learned), first(learned), termMoved, o.before.leader, o.after.leader, o.before.voters, o.after.voters,
		o.rogueSeenIn.Round(time.Millisecond), o.gossip.Rogues)
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
func checkFlood(t *testing.T, o outcome) {
	t.Helper()
	if o.arpFlood.sent < 100 {
		t.Errorf("the client made only %d requests during the flood", o.arpFlood.sent)
	}
	if o.arpFlood.share() < minAnswered {
		t.Errorf("during the ARP flood the client got %v, want at least %.0f %% answered", o.arpFlood, 100*minAnswered)
	}
	if want := 2 * floodRate / 4; o.flood.FramesPerSecond() < float64(want) {
		t.Errorf("the attacker sent only %.0f frames/s, under a quarter of the %d it aims at: the machine is too busy for this run to mean anything",
			o.flood.FramesPerSecond(), 2*floodRate)
	}
	if o.flood.Elapsed < floodFor {
		t.Errorf("the flood lasted %v, less than the %v the client was asking", o.flood.Elapsed, floodFor)
	}
	if slices.ContainsFunc(o.holderEvents, func(e event) bool { return e.phase == "ARP flood" }) {
		t.Error("the VIP moved during the flood")
	}
}

func requireSuite(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("the attacker suite runs a cluster for about half a minute; skipped in -short mode")
	}
}
