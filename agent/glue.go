package agent

import (
	"context"
	"time"

	"github.com/vipd/vipd/cluster"
	"github.com/vipd/vipd/health"
	"github.com/vipd/vipd/vip"
)

// The cluster-to-VIP glue, in one place: what the VIP manager learns about this node's health, what this node
// gossips about itself, and to whom it hands leadership when it steps aside.

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
	return vip.NodeHealth{Healthy: st.Healthy, Reason: st.Reason}
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
	next, ok := vip.Successor(vip.NewClusterLeadership(a.cluster, a.cfg.Node).Peers())
	if !ok {
		return
	}
	if err := a.cluster.TransferLeadership(ctx, next.Name); err != nil {
		a.log.Warn("hand leadership to a healthy peer before leaving", "to", next.Name, "err", err)
		return
	}
	a.log.Info("leadership handed over before leaving", "to", next.Name)
}

// publishMeta keeps this node's gossip metadata (health, VIP held) level with reality, so peers choose a
// healthy leader and `vipd members` is true on every node.
func (a *Agent) publishMeta(ctx context.Context) {
	var healthCh, vipCh <-chan struct{}
	if a.node != nil {
		ch, cancel := a.node.Subscribe()
		defer cancel()
		healthCh = ch
	}
	if a.vip != nil {
		ch, cancel := a.vip.Subscribe()
		defer cancel()
		vipCh = ch
	}
	// Republish unchanged metadata now and then: memberlist drops an update whose broadcast times out, and
	// peers would then show a stale VIP holder until the next change.
	const republish = 2 * time.Second
	ticker := time.NewTicker(republish)
	defer ticker.Stop()
	var last cluster.Meta
	var lastAt time.Time
	for {
		m := a.localMeta()
		if lastAt.IsZero() || m != last || time.Since(lastAt) >= republish {
			a.cluster.UpdateMeta(func(dst *cluster.Meta) {
				dst.Healthy, dst.ListenerUp = m.Healthy, m.ListenerUp
				dst.HealthyBackends, dst.TotalBackends = m.HealthyBackends, m.TotalBackends
				dst.Witness, dst.Priority, dst.VIPHeld = m.Witness, m.Priority, m.VIPHeld
			})
			last, lastAt = m, time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-healthCh:
		case <-vipCh:
		case <-ticker.C:
		}
	}
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
	}
	return m
}
