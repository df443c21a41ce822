package cluster

import (
	"context"
	"fmt"
	"strings"
	"time"
)

const (
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
)

// joinLoop retries memberlist.Join against cfg.Join with exponential backoff until one peer answers, so nodes
// may start in any order. Each failed attempt is logged once (attempts are one backoff step apart).
func (c *Cluster) joinLoop(ctx context.Context) {
	addrs := make([]string, 0, len(c.cfg.Join))
	for _, j := range c.cfg.Join {
		a, _ := joinAddr(j, c.cfg.GossipPort) // validated by New
		addrs = append(addrs, a)
	}
	ml := c.memberlist()
	backoff := joinBackoffMin
	for attempt := 1; ; attempt++ {
		c.foreign.Store(nil)
		n, err := ml.Join(addrs)
		if f := c.foreign.Load(); f != nil && n == 0 {
			c.setProblem("%v: this node (%s) belongs to cluster %s, but -join reached %s at %s, of cluster %s: point -join at the right cluster, or wipe this node's -data-dir to join cluster %s",
				ErrForeignCluster, c.cfg.NodeName, c.localMeta().ClusterID, f.name, f.addr, f.id, f.id)
			c.kickNow()
		}
		if p := c.problem.Load(); p != nil {
			c.log.Error("not joining the cluster", "reason", *p)
			return
		}
		if err == nil || n > 0 {
			c.joined.Store(true)
			c.log.Info("joined cluster", "contacted", n, "attempts", attempt)
			c.kickNow()
			return
		}
		c.log.Warn("join failed; retrying", "peers", addrs, "attempt", attempt, "retry_in", backoff, "err", joinHint(err, c.cfg.EncryptKey != nil))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, joinBackoffMax)
	}
}

// joinHint adds the likely cause to a join error. memberlist reports a key mismatch only as the peer closing
// the stream (EOF) or a decryption failure, so the hint is a question, not a verdict.
func joinHint(err error, encrypted bool) error {
	s := err.Error()
	if strings.Contains(s, "EOF") || strings.Contains(s, "crypt") || strings.Contains(s, "connection reset") {
		if encrypted {
			return fmt.Errorf("%w (gossip key mismatch? check -encrypt on both nodes)", err)
		}
		return fmt.Errorf("%w (gossip key mismatch? the peer may use -encrypt)", err)
	}
	return err
}
