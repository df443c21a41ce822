package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// leaveRemovalWait bounds how long Leave waits for the leader to remove this node from raft when ctx has no
// earlier deadline.
const leaveRemovalWait = 5 * time.Second

// Leave departs gracefully and then stops the node: it marks itself leaving in gossip, transfers leadership
// if it leads (so the next leader is elected in milliseconds, not after a timeout), waits (bounded by ctx and
// 5 s) until the leader has removed it from raft's configuration, leaves gossip and shuts down. The node is
// stopped on return even if a step failed; the error says which.
func (c *Cluster) Leave(ctx context.Context) error {
	r := c.rft.Load()
	if r == nil || c.memberlist() == nil || c.stopped.Load() {
		return ErrNotStarted
	}
	c.leaving.Store(true)
	var errs []error
	// Hand leadership over before anything else: gossiping the leaving flag waits for a broadcast round.
	// A single voter (-dev, or the last node of a cluster) has nobody to hand over to: raft would fail with
	// "cannot find peer", a warning on every such stop that says nothing.
	if r.State() == raft.Leader && c.otherVoters() > 0 {
		if err := r.LeadershipTransfer().Error(); err != nil {
			c.log.Warn("leave: leadership transfer failed", "err", err)
		} else {
			c.log.Info("leave: leadership transferred")
		}
	}
	c.setInternal(func(m *wireMeta) { m.Leaving = true })
	if err := c.leaveRaft(ctx, r); err != nil {
		errs = append(errs, err)
	}
	if err := c.memberlist().Leave(gossipLeaveTimeout); err != nil {
		errs = append(errs, fmt.Errorf("leave gossip: %w", err))
	}
	if err := c.Shutdown(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// otherVoters counts the voters of raft's configuration other than this node; 0 if it cannot be read (then
// a transfer could not find a peer either).
func (c *Cluster) otherVoters() int {
	cfg, err := c.configuration()
	if err != nil {
		return 0
	}
	n := 0
	for _, s := range cfg.Servers {
		if s.ID != raft.ServerID(c.cfg.NodeName) && s.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

func (c *Cluster) leaveRaft(ctx context.Context, r *raft.Raft) error {
	self := raft.ServerID(c.cfg.NodeName)
	ctx, cancel := context.WithTimeout(ctx, leaveRemovalWait)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	retried := false // Leave tried a transfer once already; one more try here
	for {
		cfg, err := c.configuration()
		if err != nil {
			return fmt.Errorf("leave raft: %w", err)
		}
		in, others := false, 0
		for _, s := range cfg.Servers {
			if s.ID == self {
				in = true
			} else if s.Suffrage == raft.Voter {
				others++
			}
		}
		if !in || others == 0 { // removed, or the last voter (nothing to hand over to)
			return nil
		}
		if r.State() == raft.Leader {
			// Still (or again) leader: Leave's transfer failed, or leadership came back. Try once more, since a
			// transfer elects the successor at once; then the leader removes itself, and the others elect a
			// successor after their heartbeat timeout.
			if !retried {
				retried = true
				if err := r.LeadershipTransfer().Error(); err != nil {
					c.log.Warn("leave: leadership transfer failed again; removing self as leader", "err", err)
				} else {
					c.log.Info("leave: leadership transferred on the second try")
					continue
				}
			}
			if err := r.RemoveServer(self, 0, raftChangeTimeout).Error(); err != nil {
				c.log.Warn("leave: remove self from raft", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("leave raft: still in the configuration after waiting for the leader to remove this node: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// ForceLeave removes a failed node: from raft's configuration (leader only) and from this node's member list.
// It refuses to remove a voter if the remaining alive voters would not be a quorum of the new configuration,
// because the cluster could then never commit again.
func (c *Cluster) ForceLeave(name string) error {
	r := c.rft.Load()
	if r == nil {
		return ErrNotStarted
	}
	if name == c.cfg.NodeName {
		return fmt.Errorf("force-leave %s: this is the local node; use leave", name)
	}
	if r.State() != raft.Leader {
		_, leader := r.LeaderWithID()
		if leader == "" {
			return fmt.Errorf("force-leave %s: %w; no leader is known", name, ErrNotLeader)
		}
		return fmt.Errorf("force-leave %s: %w; run it on the leader %s", name, ErrNotLeader, leader)
	}
	cfg, err := c.configuration()
	if err != nil {
		return fmt.Errorf("force-leave %s: %w", name, err)
	}
	var target *raft.Server
	for i, s := range cfg.Servers {
		if string(s.ID) == name {
			target = &cfg.Servers[i]
		}
	}
	if target == nil {
		if c.members.forget(name) {
			c.log.Info("force-leave: forgot member (not a raft server)", "peer", name)
			return nil
		}
		return fmt.Errorf("force-leave %s: %w", name, ErrUnknownNode)
	}
	if target.Suffrage == raft.Voter {
		if remaining, alive, quorum := c.quorumWithout(cfg, name); alive < quorum {
			return fmt.Errorf("force-leave %s: %w: %d voters would remain, only %d of them alive, and a quorum needs %d; bring nodes back or use recover",
				name, ErrQuorum, remaining, alive, quorum)
		}
	}
	if err := r.RemoveServer(target.ID, 0, raftChangeTimeout).Error(); err != nil {
		return fmt.Errorf("force-leave %s: remove from raft: %w", name, err)
	}
	c.members.forget(name)
	c.log.Info("force-leave: removed node", "peer", name)
	return nil
}
