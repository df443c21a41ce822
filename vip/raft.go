package vip

import (
	"context"
	"sync"

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

// WatchLeadership follows Raft's leadership of this node. cluster reports each value with its term; until
// the Manager uses terms, this forwards the leadership flag (latest value wins, as cluster's channel does).
func (l ClusterLeadership) WatchLeadership() (<-chan bool, func()) {
	src, stopSrc := l.c.WatchLeadership()
	out := make(chan bool, 1)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case v := <-src:
				select {
				case <-out:
				default:
				}
				out <- v.Leader
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return out, func() {
		once.Do(func() {
			close(done)
			<-exited
			stopSrc()
		})
	}
}

// Barrier commits a barrier: proof that this node leads the current term.
func (l ClusterLeadership) Barrier(ctx context.Context) error { return l.c.Barrier(ctx) }

// VerifyLeader confirms with a quorum that this node still leads.
func (l ClusterLeadership) VerifyLeader(ctx context.Context) error { return l.c.VerifyLeader(ctx) }

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
