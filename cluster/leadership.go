package cluster

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// defaultOpTimeout bounds raft operations whose context has no deadline.
const defaultOpTimeout = 10 * time.Second

// fanout is the single reader of raft's NotifyCh (which, unlike LeaderCh, delivers every transition and blocks
// raft until read). It hands the latest value to every subscriber through a cap-1 channel that always holds
// the newest value (drain, then send), so a slow subscriber skips stale values but never misses the last one.
type fanout struct {
	mu   sync.Mutex
	cur  bool
	next int
	subs map[int]chan bool
	stop chan struct{}
}

func newFanout() *fanout { return &fanout{subs: map[int]chan bool{}, stop: make(chan struct{})} }

// run forwards notify until stop is closed (by Shutdown only: raft blocks on NotifyCh, so the reader must
// outlive every raft state change).
func (f *fanout) run(notify <-chan bool) {
	for {
		select {
		case v := <-notify:
			f.publish(v)
		case <-f.stop:
			return
		}
	}
}

func (f *fanout) publish(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cur = v
	for _, ch := range f.subs {
		select {
		case <-ch:
		default:
		}
		ch <- v // cannot block: cap 1, drained above, and only publish sends (under mu)
	}
}

func (f *fanout) subscribe() (<-chan bool, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.next
	f.next++
	ch := make(chan bool, 1)
	ch <- f.cur
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, id)
	}
}

// WatchLeadership returns a channel that holds this node's latest raft leadership (true = leader) and a
// function to unsubscribe. The channel has capacity 1 and always holds the newest value: a subscriber that
// reads late sees the current state, never a stale one. It receives false when the node shuts down.
func (c *Cluster) WatchLeadership() (<-chan bool, func()) { return c.leaders.subscribe() }

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

// VerifyLeader checks with a quorum that this node is still leader. It returns promptly on a follower and
// within the lease timeout on a leader that lost its quorum.
//
// raft v1.8.0 never answers a verification queued while it shuts down (its verify future has no shutdown
// channel, and after shutdown VerifyLeader queues one half of the time), so none may be under way then:
// Shutdown stops raft under verifyMu, after the verifications in flight, and later ones are refused.
func (c *Cluster) VerifyLeader(ctx context.Context) error {
	c.verifyMu.RLock()
	defer c.verifyMu.RUnlock()
	r := c.rft.Load()
	if r == nil || c.stopped.Load() {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("verify raft leadership: %w", err)
	}
	return nil
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
