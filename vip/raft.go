package vip

import (
	"context"
	"sync"
	"time"

	"github.com/vipd/vipd/cluster"
)

// ClusterLeadership is the Leadership of a vipd cluster node: Raft decides who leads, and the candidates for a
// hand-off come from gossip metadata.
//
// Only the Manager may move leadership while it holds the VIP, because it releases first: a raw transfer
// (cluster.TransferLeadership or cluster.Leave) skips pre-vote, so the target can win and commit a barrier
// with the third node before the old holder has seen that it lost — two holders for a few milliseconds.
type ClusterLeadership struct {
	c    *cluster.Cluster
	self string
}

var _ Leadership = ClusterLeadership{}

// NewClusterLeadership adapts node c, named self, for a Manager.
func NewClusterLeadership(c *cluster.Cluster, self string) ClusterLeadership {
	return ClusterLeadership{c: c, self: self}
}

// WatchLeadership follows Raft's leadership of this node, with the term the cluster reports for each state,
// so a coalesced loss and regain is seen as a new term.
func (l ClusterLeadership) WatchLeadership() (<-chan LeaderState, func()) {
	in, stopIn := l.c.WatchLeadership()
	out := make(chan LeaderState, 1)
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
				select { // keep only the newest state, as the cluster's channel does
				case <-out:
				default:
				}
				out <- LeaderState{Leader: v.Leader, Term: v.Term} // cannot block: capacity 1, emptied above, single sender
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
func (l ClusterLeadership) Barrier(ctx context.Context) error { return l.c.Barrier(ctx) }

// VerifyLeader confirms with a quorum that this node still leads, and since when the quorum heard from it.
func (l ClusterLeadership) VerifyLeader(ctx context.Context) (time.Time, error) {
	return l.c.VerifyLeader(ctx)
}

// TransferLeadership hands leadership to toNode ("" = any).
func (l ClusterLeadership) TransferLeadership(ctx context.Context, toNode string) error {
	return l.c.TransferLeadership(ctx, toNode)
}

// Peers lists the other members: healthy means alive, gossiping healthy and not a witness (a witness never
// holds the VIP); a voter is a Raft leader or follower.
func (l ClusterLeadership) Peers() []Peer {
	var out []Peer
	for _, m := range l.c.Members() {
		if m.Name == l.self {
			continue
		}
		out = append(out, Peer{
			Name:     m.Name,
			Healthy:  m.Status == cluster.StatusAlive && m.Meta.Healthy && !m.Meta.Witness,
			Witness:  m.Meta.Witness,
			Priority: m.Meta.Priority,
			Voter:    m.Role == cluster.RoleLeader || m.Role == cluster.RoleFollower,
		})
	}
	return out
}
