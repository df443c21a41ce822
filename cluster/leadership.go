package cluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vipd/vipd/internal/notify"
)

// defaultOpTimeout bounds raft operations whose context has no deadline.
const defaultOpTimeout = 10 * time.Second

// LeaderState is one leadership notification: whether this node leads, and raft's term when raft reported
// it. Two notifications with Leader true and different terms are two leaderships, even if the false in
// between was coalesced away; the same term twice is one.
type LeaderState struct {
	Leader bool
	Term   uint64
}

// fanout is the single reader of raft's NotifyCh (which, unlike LeaderCh, delivers every transition and blocks
// raft until read). It hands the latest value, with its term, to every subscriber through notify's
// broadcaster: a slow subscriber skips stale values but never misses the last one.
type fanout struct {
	states *notify.Broadcaster[LeaderState]
	stop   chan struct{}
}

func newFanout() *fanout {
	return &fanout{states: notify.NewLatest(LeaderState{}), stop: make(chan struct{})}
}

// run forwards notify, with the term term reports at that moment, until stop is closed (by Shutdown only:
// raft blocks on NotifyCh, so the reader must outlive every raft state change).
func (f *fanout) run(notify <-chan bool, term func() uint64) {
	for {
		select {
		case v := <-notify:
			f.publish(v, term())
		case <-f.stop:
			return
		}
	}
}

func (f *fanout) publish(leader bool, term uint64) {
	f.states.Publish(LeaderState{Leader: leader, Term: term})
}

func (f *fanout) subscribe() (<-chan LeaderState, func()) { return f.states.Subscribe() }

// WatchLeadership returns a channel that holds this node's latest raft leadership, with its term, and a
// function to unsubscribe. The channel has capacity 1 and always holds the newest value: a subscriber that
// reads late sees the current state, never a stale one (compare terms to tell a new leadership from a
// repeated one). It receives {false, 0} when the node shuts down.
func (c *Cluster) WatchLeadership() (<-chan LeaderState, func()) { return c.leaders.subscribe() }

// IsLeader reports whether raft currently considers this node leader (the lease check may still demote it).
func (c *Cluster) IsLeader() bool {
	r := c.rft.Load()
	return r != nil && r.State() == raft.Leader
}

// opTimeout converts ctx's deadline into a raft timeout (raft futures take durations, not contexts).
func opTimeout(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if d, ok := ctx.Deadline(); ok {
		t := time.Until(d)
		if t <= 0 {
			return 0, context.DeadlineExceeded
		}
		return t, nil
	}
	return defaultOpTimeout, nil
}

// Barrier commits a no-op entry and waits until it is applied: success proves that this node leads the
// current term and has applied every earlier entry. The VIP manager calls it before acquiring the VIP.
// Cancellation is honoured through ctx's deadline (default 10 s).
func (c *Cluster) Barrier(ctx context.Context) error {
	r := c.rft.Load()
	if r == nil {
		return ErrNotStarted
	}
	t, err := opTimeout(ctx)
	if err != nil {
		return err
	}
	if err := r.Barrier(t).Error(); err != nil {
		return fmt.Errorf("raft barrier: %w", err)
	}
	return nil
}

// VerifyLeader checks with a quorum that this node is still leader, and returns the time since which a quorum
// (this node included) is known to have heard from it: the send time of the acknowledged heartbeats that
// make the quorum, never the time of the call (see lease.go for why the difference matters after a pause).
// It returns promptly on a follower and within the lease timeout on a leader that lost its quorum; it
// returns ctx.Err() as soon as ctx ends,
// leaving raft to finish the check in the background (Shutdown waits for that, so nothing outlives it).
//
// raft v1.8.0 never answers a verification queued while it shuts down (its verify future has no shutdown
// channel, and after shutdown VerifyLeader queues one half of the time), so none may be under way then:
// the goroutine waiting for raft's answer holds verifyMu shared, Shutdown stops raft holding it exclusively,
// and a VerifyLeader after Shutdown is refused.
func (c *Cluster) VerifyLeader(ctx context.Context) (time.Time, error) {
	r := c.rft.Load()
	if r == nil {
		return time.Time{}, ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	c.verifyMu.RLock()
	if c.stopped.Load() {
		c.verifyMu.RUnlock()
		return time.Time{}, ErrNotStarted
	}
	term := r.CurrentTerm()
	f := r.VerifyLeader()
	done := make(chan error, 1)
	go func() {
		defer c.verifyMu.RUnlock() // raft has answered: Shutdown may proceed
		done <- f.Error()
	}()
	select {
	case err := <-done:
		if err != nil {
			return time.Time{}, fmt.Errorf("verify raft leadership: %w", err)
		}
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	cfg, err := c.configuration()
	if err != nil {
		return time.Time{}, fmt.Errorf("verify raft leadership: %w", err)
	}
	var voters []raft.ServerID
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter {
			voters = append(voters, s.ID)
		}
	}
	since, ok := c.trans.acks.quorumSince(raft.ServerID(c.cfg.NodeName), voters, term, time.Now())
	if !ok || r.CurrentTerm() != term {
		return time.Time{}, fmt.Errorf("verify raft leadership: %w", ErrNoLeaseProof)
	}
	return since, nil
}

// TransferLeadership hands leadership to toNode ("" = the most up-to-date voter raft picks) and waits until
// the transfer finished or failed (raft bounds it by the election timeout).
//
// A transfer skips pre-vote and the followers' leader stickiness, so the target can be elected and commit a
// barrier before this node has noticed it lost: whoever holds the VIP must release it before calling this
// (vip.Manager does; the agent stops the Manager before it hands over and leaves).
func (c *Cluster) TransferLeadership(ctx context.Context, toNode string) error {
	r := c.rft.Load()
	if r == nil {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var f raft.Future
	if toNode == "" {
		f = r.LeadershipTransfer()
	} else {
		srv, ok, err := c.server(toNode)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("transfer leadership to %q: %w (not a raft server)", toNode, ErrUnknownNode)
		}
		if srv.Suffrage != raft.Voter {
			return fmt.Errorf("transfer leadership to %q: it is a non-voter", toNode)
		}
		f = r.LeadershipTransferToServer(srv.ID, srv.Address)
	}
	if err := f.Error(); err != nil {
		if toNode == "" {
			return fmt.Errorf("transfer leadership: %w", err)
		}
		return fmt.Errorf("transfer leadership to %q: %w", toNode, err)
	}
	return nil
}

// configuration returns raft's latest configuration.
func (c *Cluster) configuration() (raft.Configuration, error) {
	r := c.rft.Load()
	if r == nil {
		return raft.Configuration{}, ErrNotStarted
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("read raft configuration: %w", err)
	}
	return f.Configuration(), nil
}

func (c *Cluster) server(name string) (raft.Server, bool, error) {
	cfg, err := c.configuration()
	if err != nil {
		return raft.Server{}, false, err
	}
	for _, s := range cfg.Servers {
		if string(s.ID) == name {
			return s, true, nil
		}
	}
	return raft.Server{}, false, nil
}
