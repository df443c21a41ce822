package agent

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/vip"
)

// The cluster-to-VIP glue, in one place: how the VIP manager sees Raft (clusterLeadership), what it learns
// about this node's health, what this node gossips about itself (publishMeta), and to whom it hands
// leadership when it steps aside (handOver). Package vip depends on nothing but its seams; this file is
// the only code that knows both cluster and vip.

// clusterLeadership is the vip.Leadership of a cluster node: Raft decides who leads, and the candidates for
// a hand-off come from gossip metadata.
//
// Only the Manager may move leadership while it holds the VIP, because it releases first: a raw transfer
// (cluster.TransferLeadership or cluster.Leave) skips pre-vote, so the target can win and commit a barrier
// with the third node before the old holder has seen that it lost — two holders for a few milliseconds.
type clusterLeadership struct {
	c    *cluster.Cluster
	self string
}

var _ vip.Leadership = clusterLeadership{}

// WatchLeadership follows Raft's leadership of this node, with the term of each state, so the Manager tells a
// coalesced loss and regain from a duplicate. The two packages keep their own LeaderState (vip depends on
// nothing of cluster's), so one goroutine forwards, keeping only the newest state as both channels do.
func (l clusterLeadership) WatchLeadership() (<-chan vip.LeaderState, func()) {
	in, stopIn := l.c.WatchLeadership()
	out := make(chan vip.LeaderState, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case v, ok := <-in:
				if !ok { // the cluster can no longer tell: the Manager treats a closed channel as lost
					close(out)
					return
				}
				select { // drop an unread state: only the newest counts
				case <-out:
				default:
				}
				out <- vip.LeaderState{Leader: v.Leader, Term: v.Term} // cannot block: capacity 1, emptied above, one sender
			case <-done:
				return
			}
		}
	})
	return out, sync.OnceFunc(func() {
		close(done)
		wg.Wait()
		stopIn()
	})
}

// Barrier commits a barrier: proof that this node leads the current term.
func (l clusterLeadership) Barrier(ctx context.Context) error { return l.c.Barrier(ctx) }

// VerifyLeader confirms with a quorum that this node still leads, and since when the quorum heard from it.
func (l clusterLeadership) VerifyLeader(ctx context.Context) (time.Time, error) {
	return l.c.VerifyLeader(ctx)
}

// TransferLeadership hands leadership to toNode ("" = any).
func (l clusterLeadership) TransferLeadership(ctx context.Context, toNode string) error {
	return l.c.TransferLeadership(ctx, toNode)
}

// StartDrain records this node's hand-over drain in the Raft log.
func (l clusterLeadership) StartDrain(ctx context.Context, addrs []netip.Addr) (uint64, error) {
	return l.c.StartDrain(ctx, addrs)
}

// ActiveDrains returns the other nodes' drains under way, as the cluster sees them.
func (l clusterLeadership) ActiveDrains() []vip.Drain {
	var out []vip.Drain
	for _, d := range l.c.ActiveDrains() {
		out = append(out, vip.Drain{Node: d.Node, Addrs: d.Addrs, Epoch: d.Epoch})
	}
	return out
}

// Peers lists the other members: healthy means alive, gossiping healthy, not a witness (a witness never
// holds the VIP) and not draining (a node that handed the VIP over, to leave or to a better peer, is not the
// one to take it back: a leaving one never does, it only passes leadership on once more); a voter is a Raft
// leader or follower.
func (l clusterLeadership) Peers() []vip.Peer {
	var out []vip.Peer
	for _, m := range l.c.Members() {
		if m.Name == l.self {
			continue
		}
		serving := m.Status == cluster.StatusAlive && !m.Meta.Witness && !m.Meta.Draining
		p := vip.Peer{
			Name:     m.Name,
			Healthy:  serving && m.Meta.Healthy,
			Witness:  m.Meta.Witness,
			Priority: m.Meta.Priority,
			Voter:    m.Role == cluster.RoleLeader || m.Role == cluster.RoleFollower,
		}
		if serving {
			// A node from before frontends were gossiped sends no count: it ranks by Healthy alone.
			p.Score = m.Meta.HealthyFrontends
		}
		out = append(out, p)
	}
	return out
}

// healthSource is what gates VIP leadership: this node's own health, or for a witness a node that is never
// healthy, so leadership is always handed on.
func (a *Agent) healthSource() vip.HealthSource {
	if a.node == nil {
		return witnessHealth{}
	}
	return nodeHealth{a.node}
}

// nodeHealth feeds this node's own health into the VIP manager's gate.
type nodeHealth struct{ n *health.Node }

func (h nodeHealth) Status() vip.NodeHealth {
	st := h.n.Status()
	return vip.NodeHealth{Healthy: st.Healthy, Score: st.HealthyFrontends, Reason: st.Reason}
}

func (h nodeHealth) Subscribe() (<-chan struct{}, func()) { return h.n.Subscribe() }

// witnessHealth is the health of a witness: never healthy, so the VIP manager always hands leadership on.
type witnessHealth struct{}

func (witnessHealth) Status() vip.NodeHealth {
	return vip.NodeHealth{Reason: "witness: votes but never holds the VIP"}
}

func (witnessHealth) Subscribe() (<-chan struct{}, func()) { return nil, func() {} }

// handOver transfers leadership to a healthy successor before leaving, so the next VIP holder is a node that
// can serve (raft alone would pick the most up-to-date follower, healthy or not, and that node would have to
// hand over once more). Leave transfers to any peer if this fails. The VIP manager has stopped (released)
// before this runs: a transfer skips pre-vote, so it must never happen while this node answers for the VIP.
func (a *Agent) handOver(ctx context.Context) {
	if !a.cluster.IsLeader() {
		return
	}
	next, ok := vip.Successor(clusterLeadership{a.cluster, a.cfg.Node}.Peers())
	if !ok {
		return
	}
	if err := a.cluster.TransferLeadership(ctx, next.Name); err != nil {
		a.log.Warn("hand leadership to a healthy peer before leaving", "to", next.Name, "err", err)
		return
	}
	a.log.Info("leadership handed over before leaving", "to", next.Name)
}

// metaRepublish is how often unchanged metadata is gossiped again: memberlist drops an update whose
// broadcast times out, and peers would then show a stale VIP holder until the next change.
const metaRepublish = 2 * time.Second

// publishMeta keeps a node's gossip metadata (health, VIP held) level with reality, so peers choose a healthy
// leader and `vipd members` is true on every node: it gossips local() at once when health or held signals (a
// nil channel never does), and every metaRepublish regardless. It returns when ctx is done.
func publishMeta(ctx context.Context, c *cluster.Cluster, local func() cluster.Meta, health, held <-chan struct{}) {
	ticker := time.NewTicker(metaRepublish)
	defer ticker.Stop()
	var last cluster.Meta
	var lastAt time.Time
	for {
		m := local()
		if lastAt.IsZero() || m != last || time.Since(lastAt) >= metaRepublish {
			c.UpdateMeta(func(dst *cluster.Meta) {
				dst.Healthy, dst.ListenerUp = m.Healthy, m.ListenerUp
				dst.HealthyBackends, dst.TotalBackends = m.HealthyBackends, m.TotalBackends
				dst.Witness, dst.Priority, dst.VIPHeld = m.Witness, m.Priority, m.VIPHeld
				dst.HealthyFrontends, dst.TotalFrontends = m.HealthyFrontends, m.TotalFrontends
				dst.Draining, dst.DrainDone = m.Draining, m.DrainDone
			})
			last, lastAt = m, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-health:
		case <-held:
		case <-ticker.C:
		}
	}
}

// publishMeta is the agent's publisher: its node health and its VIP manager.
func (a *Agent) publishMeta(ctx context.Context) {
	var healthCh, heldCh <-chan struct{}
	if a.node != nil {
		ch, cancel := a.node.Subscribe()
		defer cancel()
		healthCh = ch
	}
	if a.vip != nil {
		ch, cancel := a.vip.Subscribe()
		defer cancel()
		heldCh = ch
	}
	publishMeta(ctx, a.cluster, a.localMeta, healthCh, heldCh)
}

func (a *Agent) localMeta() cluster.Meta {
	m := cluster.Meta{Witness: a.cfg.Witness, Priority: a.cfg.Priority}
	if a.node != nil {
		st := a.node.Status()
		m.Healthy, m.ListenerUp = st.Healthy, st.ListenerUp
		m.HealthyBackends, m.TotalBackends = st.HealthyBackends, st.TotalBackends
	}
	if a.vip != nil {
		m.VIPHeld = a.vip.Held()
		// DrainDone tells the successor when to stop forwarding: while a drain of epoch E is under way it
		// stays below E; otherwise every drain this node ever recorded is over (a restarted node has no old
		// flows, so it must not attract any).
		switch e := a.vip.Draining(); e {
		case 0:
			m.DrainDone = a.cluster.OwnDrainEpoch()
			a.drainDone.Store(m.DrainDone)
		case vip.DrainPending:
			// Being recorded: the record may be applied already, so the latest own epoch is not "done"; every
			// drain before it is.
			m.Draining, m.DrainDone = true, a.drainDone.Load()
		default:
			m.Draining, m.DrainDone = true, e-1
		}
	}
	if a.node != nil {
		st := a.node.Status()
		m.HealthyFrontends, m.TotalFrontends = st.HealthyFrontends, st.TotalFrontends
	}
	return m
}
