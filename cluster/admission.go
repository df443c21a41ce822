package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Voter admission by identity. Gossip says who is alive and where its Raft listens; before the leader makes
// a member a Raft server (or moves it to a new address) it dials that address and runs the Raft handshake:
// the name the peer authenticates as (with mTLS, from its certificate; with a key, the name it proved with
// the key) must be the member's name. So a member can only point the cluster at a Raft server that is
// itself, and a gossip-level impostor never becomes a voter. Positive results are cached per name and
// address; failures are retried after admitRetry. In insecure mode nothing is checked (nothing could be).
const (
	admitTimeout = 2 * time.Second
	admitRetry   = 2 * time.Second
)

// admissions is the leader's memory of authenticated members and of failed voters (for ReapAfter).
type admissions struct {
	mu     sync.Mutex
	ok     map[string]string    // member name → Raft address it authenticated at
	failed map[string]time.Time // name@addr → when the last check failed
	absent map[string]time.Time // voter → since when gossip has not reported it alive
	warned map[string]time.Time // voter → when a refused reap was last logged
}

func newAdmissions() *admissions {
	return &admissions{ok: map[string]string{}, failed: map[string]time.Time{}, absent: map[string]time.Time{},
		warned: map[string]time.Time{}}
}

// admitted reports whether the member name may be a Raft server at addr, checking (and caching) its
// identity if needed. It may block for up to admitTimeout; maintain calls it.
func (c *Cluster) admitted(name, addr string) bool {
	if c.mode == ModeInsecure {
		return true
	}
	a := c.admit
	key := name + "@" + addr
	a.mu.Lock()
	if a.ok[name] == addr {
		a.mu.Unlock()
		return true
	}
	if t, ok := a.failed[key]; ok && time.Since(t) < admitRetry {
		a.mu.Unlock()
		return false
	}
	a.mu.Unlock()

	err := c.checkIdentity(name, addr)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.failed[key] = time.Now()
		c.refused.refused(addr, "not admitted as a Raft server", fmt.Errorf("member %s: %w", name, err))
		return false
	}
	delete(a.failed, key)
	a.ok[name] = addr
	c.log.Info("authenticated member at its Raft address", "peer", name, "raft_addr", addr, "security", c.mode)
	return true
}

// checkIdentity runs the Raft handshake against addr and checks the authenticated name.
func (c *Cluster) checkIdentity(name, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), admitTimeout)
	defer cancel()
	conn, names, err := dialAuthenticated(ctx, c.auth, c.cfg.Partition.filter(), c.localAddr(), addr)
	if err != nil {
		return err
	}
	conn.Close()
	if !slices.Contains(names, name) {
		return fmt.Errorf("its Raft address %s authenticated as %v, not as %s", addr, names, name)
	}
	return nil
}

// quorumWithout reports, for removing voter name from cfg, how many voters would remain, how many of those
// are alive (this node, and members gossip reports alive), and the quorum they would need.
func (c *Cluster) quorumWithout(cfg raft.Configuration, name string) (remaining, alive, quorum int) {
	for _, s := range cfg.Servers {
		if string(s.ID) == name || s.Suffrage != raft.Voter {
			continue
		}
		remaining++
		if string(s.ID) == c.cfg.NodeName {
			alive++
		} else if m, ok := c.members.get(string(s.ID)); ok && m.status == StatusAlive {
			alive++
		}
	}
	return remaining, alive, remaining/2 + 1
}

// reap (leader only, ReapAfter > 0) removes voters that gossip has not reported alive for longer than
// ReapAfter, when the remaining voters keep a quorum with the alive ones. The clock starts when this leader
// first sees the voter failed, so a leader change restarts it (never removes early).
func (c *Cluster) reap(cfg raft.Configuration, now time.Time) {
	a := c.admit
	voters := map[string]bool{}
	for _, s := range cfg.Servers {
		if s.Suffrage != raft.Voter || string(s.ID) == c.cfg.NodeName {
			continue
		}
		name := string(s.ID)
		voters[name] = true
		m, ok := c.members.get(name)
		a.mu.Lock()
		if ok && m.status == StatusAlive {
			delete(a.absent, name)
			a.mu.Unlock()
			continue
		}
		since, seen := a.absent[name]
		if !seen {
			a.absent[name] = now
			a.mu.Unlock()
			continue
		}
		a.mu.Unlock()
		if now.Sub(since) < c.cfg.ReapAfter {
			continue
		}
		remaining, alive, quorum := c.quorumWithout(cfg, name)
		if alive < quorum {
			a.mu.Lock()
			warn := now.Sub(a.warned[name]) >= refusalLogEvery
			if warn {
				a.warned[name] = now
			}
			a.mu.Unlock()
			if warn {
				c.log.Warn("reap: not removing a failed voter: the remaining voters would lack a quorum", "peer", name,
					"failed_for", now.Sub(since).Round(time.Second), "remaining", remaining, "alive", alive, "quorum", quorum)
			}
			continue
		}
		if err := c.rft.Load().RemoveServer(s.ID, 0, raftChangeTimeout).Error(); err != nil {
			c.log.Warn("reap: remove failed voter", "peer", name, "err", err)
			return
		}
		c.log.Warn("reap: removed a voter that had failed for longer than the reap delay", "peer", name,
			"failed_for", now.Sub(since).Round(time.Second), "reap_after", c.cfg.ReapAfter, "voters_left", remaining)
		a.mu.Lock()
		delete(a.absent, name)
		delete(a.warned, name)
		delete(a.ok, name)
		a.mu.Unlock()
		c.members.forget(name)
		return // one change per pass: the next pass sees the new configuration
	}
	a.mu.Lock()
	for name := range a.absent {
		if !voters[name] {
			delete(a.absent, name)
			delete(a.warned, name)
		}
	}
	a.mu.Unlock()
}
