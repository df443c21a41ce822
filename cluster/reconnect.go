package cluster

import (
	"context"
	"math/rand/v2"
	"time"
)

// Gossip reconnect (Serf's reconnect_interval). memberlist never probes, gossips state with, or push-pulls
// with a node it has declared dead, so after a partition longer than the suspicion timeout (about 2-3 s with
// gossipProbeInterval and 3 nodes) both sides would list each other as dead forever, although raft, which
// dials on its own, reconnects. The reconnect loop re-joins failed members until they are alive again. A
// join is a push-pull: the first one lets each side see the other's claim that it is dead and refute it with
// a higher incarnation, the next one (or gossip) carries the refutation back, so members are alive again
// within about two rounds of the heal.
const (
	reconnectInterval = time.Second
	reconnectJitter   = 0.2 // ± fraction of reconnectInterval, so nodes healed together do not join in step
	reconnectPerRound = 3   // members tried per round; each try may wait up to gossipTCPTimeout
)

// reconnectLoop runs until ctx ends or a Problem stops gossip.
func (c *Cluster) reconnectLoop(ctx context.Context) {
	joinAddrs := make([]string, 0, len(c.cfg.Join))
	for _, j := range c.cfg.Join {
		a, _ := joinAddr(j, c.cfg.GossipPort) // validated by New
		joinAddrs = append(joinAddrs, a)
	}
	failing := map[string]bool{} // members whose current failure has been logged
	t := time.NewTimer(jittered(reconnectInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if c.problem.Load() != nil {
			return
		}
		c.reconnectOnce(joinAddrs, failing)
		t.Reset(jittered(reconnectInterval))
	}
}

func jittered(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 - reconnectJitter + 2*reconnectJitter*rand.Float64()))
}

// reconnectOnce tries one round of joins. Each member's failure and recovery are logged once; individual
// failed attempts only at debug level.
func (c *Cluster) reconnectOnce(joinAddrs []string, failing map[string]bool) {
	recs := c.members.snapshot()
	for name := range failing {
		rec, ok := c.members.get(name)
		if ok && rec.status == StatusDead {
			continue
		}
		delete(failing, name)
		if ok && rec.status == StatusAlive {
			c.log.Info("gossip: failed member is reachable again", "peer", name, "addr", rec.addr)
		}
	}
	targets := reconnectTargets(c.cfg.NodeName, recs, joinAddrs, c.joined.Load(), reconnectPerRound)
	ml := c.memberlist()
	for _, tg := range targets {
		if tg.name != "" && !failing[tg.name] {
			failing[tg.name] = true
			c.log.Warn("gossip: member failed; trying to re-join it periodically", "peer", tg.name, "addr", tg.addrs[0],
				"every", reconnectInterval)
		}
		n, err := ml.Join(tg.addrs)
		if err != nil && n == 0 {
			c.log.Debug("gossip reconnect failed", "peer", tg.name, "addrs", tg.addrs, "err", err)
		}
	}
}

// reconnectTarget is one Join call: a failed member's last gossip address, or (name "") the -join addresses.
type reconnectTarget struct {
	name  string
	addrs []string
}

// reconnectTargets picks at most limit failed (dead, not left) members of recs, in random order so a
// permanently dead member cannot starve the others. A node that knows no peer at all (every one was
// force-left) falls back to its -join addresses once its initial join has finished.
func reconnectTargets(self string, recs []memberRecord, joinAddrs []string, joined bool, limit int) []reconnectTarget {
	var dead []reconnectTarget
	peers := 0
	for _, r := range recs {
		if r.name == self {
			continue
		}
		peers++
		if r.status == StatusDead {
			dead = append(dead, reconnectTarget{name: r.name, addrs: []string{r.addr}})
		}
	}
	if peers == 0 {
		if joined && len(joinAddrs) > 0 {
			return []reconnectTarget{{addrs: joinAddrs}}
		}
		return nil
	}
	rand.Shuffle(len(dead), func(i, j int) { dead[i], dead[j] = dead[j], dead[i] })
	if len(dead) > limit {
		dead = dead[:limit]
	}
	return dead
}
