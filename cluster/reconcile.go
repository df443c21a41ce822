package cluster

import (
	"context"
	"sort"
	"time"

	"github.com/hashicorp/raft"
)

// raftChangeTimeout bounds one configuration change (AddVoter/RemoveServer) issued by reconcile.
const raftChangeTimeout = 5 * time.Second

// maintain runs on every node: on membership events and on a ticker it records whether this node has raft
// state, bootstraps when -bootstrap-expect is met, and, on the leader, reconciles raft's configuration with
// gossip membership (Consul's leader.go reconcile, level-triggered).
func (c *Cluster) maintain(ctx context.Context) {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	var st maintainState
	for {
		c.maintainOnce(&st)
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
	}
}

type maintainState struct {
	booted       bool
	gossipClosed bool
	lastWait     string // last logged bootstrap wait reason, to log each reason once
}

func (c *Cluster) maintainOnce(st *maintainState) {
	if p := c.problem.Load(); p != nil {
		if !st.gossipClosed { // a duplicate-name newcomer stops gossiping so it cannot disturb the cluster
			st.gossipClosed = true
			c.log.Error("leaving gossip", "reason", *p)
			c.memberlist().Shutdown()
		}
		return
	}
	r := c.rft.Load()
	if !c.localMeta().HasState && (r.LastIndex() > 0 || r.State() == raft.Leader) {
		c.setInternal(func(m *wireMeta) { m.HasState = true })
	}
	if !st.booted {
		c.maybeBootstrap(st)
	}
	c.syncKeyMeta()
	c.warmSpares()
	if r.State() == raft.Leader && !c.leaving.Load() {
		if c.fsm.clusterID() == "" {
			c.assignClusterID(r)
		}
		c.reconcile()
	}
}

// maybeBootstrap implements Consul's bootstrap-expect: when exactly BootstrapExpect alive nodes, all
// advertising the same -bootstrap-expect and none with raft state, see each other, every one of them
// bootstraps raft with the same sorted server list, so the first configuration is identical everywhere and
// two clusters never form. A node with state never bootstraps; if any peer has state, this node waits to be
// added by that cluster's leader.
func (c *Cluster) maybeBootstrap(st *maintainState) {
	expect := c.cfg.BootstrapExpect
	if expect == 0 || c.cfg.Dev || c.localMeta().HasState {
		st.booted = true
		return
	}
	wait := func(reason string, args ...any) {
		if reason != st.lastWait {
			st.lastWait = reason
			c.log.Info("not bootstrapping yet: "+reason, args...)
		}
	}
	var servers []raft.Server
	for _, m := range c.members.snapshot() {
		if m.status != StatusAlive {
			continue
		}
		if m.meta.HasState {
			wait("a peer already has raft state; waiting for its leader to add this node", "peer", m.name)
			return
		}
		if m.meta.Bootstrap == 0 || m.meta.RaftAddr == "" {
			continue
		}
		if m.meta.Bootstrap != expect {
			wait("peers disagree on -bootstrap-expect", "peer", m.name, "peer_expect", m.meta.Bootstrap, "expect", expect)
			return
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(m.name), Address: raft.ServerAddress(m.meta.RaftAddr)})
	}
	if len(servers) < expect {
		wait("waiting for -bootstrap-expect nodes", "seen", len(servers), "expect", expect)
		return
	}
	if len(servers) > expect {
		wait("more nodes than -bootstrap-expect without raft state see each other; refusing an ambiguous bootstrap (fix -bootstrap-expect)", "seen", len(servers), "expect", expect)
		return
	}
	sort.Slice(servers, func(i, j int) bool { return servers[i].ID < servers[j].ID })
	err := c.rft.Load().BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && err != raft.ErrCantBootstrap {
		c.log.Error("raft bootstrap failed", "err", err)
		return
	}
	st.booted = true
	c.setInternal(func(m *wireMeta) { m.HasState = true })
	c.log.Info("raft bootstrapped", "servers", len(servers))
}

// reconcile (leader only) makes raft's configuration follow gossip: an alive member that is not a server is
// added (a voter while there are fewer than 5, else a non-voter) once this leader has authenticated it at its
// Raft address (admission.go); a member that left gracefully, or is leaving, is removed; a failed member
// stays a voter until ForceLeave, or until it has failed for longer than ReapAfter.
func (c *Cluster) reconcile() {
	r := c.rft.Load()
	cfg, err := c.configuration()
	if err != nil {
		return
	}
	servers := map[string]raft.Server{}
	voters := 0
	for _, s := range cfg.Servers {
		servers[string(s.ID)] = s
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	for _, m := range c.members.snapshot() {
		if m.name == c.cfg.NodeName {
			continue
		}
		srv, isServer := servers[m.name]
		id := raft.ServerID(m.name)
		switch {
		case m.status == StatusLeft || (m.status == StatusAlive && m.meta.Leaving):
			if !isServer {
				continue
			}
			if err := r.RemoveServer(id, 0, raftChangeTimeout).Error(); err != nil {
				c.log.Warn("reconcile: remove departed node from raft", "peer", m.name, "err", err)
				return
			}
			if srv.Suffrage == raft.Voter {
				voters--
			}
			c.log.Info("reconcile: removed departed node from raft", "peer", m.name)
		case m.status == StatusAlive && m.meta.RaftAddr != "":
			addr := raft.ServerAddress(m.meta.RaftAddr)
			var voter bool
			switch {
			case !isServer && voters < maxVoters:
				voter = true
			case !isServer:
			case srv.Suffrage != raft.Voter && voters < maxVoters:
				voter = true // promote
			case srv.Address != addr:
				voter = srv.Suffrage == raft.Voter // address changed
			default:
				continue
			}
			if !c.admitted(m.name, string(addr)) {
				continue
			}
			var f raft.IndexFuture
			if voter {
				f = r.AddVoter(id, addr, 0, raftChangeTimeout)
				if !isServer || srv.Suffrage != raft.Voter {
					voters++
				}
			} else {
				f = r.AddNonvoter(id, addr, 0, raftChangeTimeout)
			}
			if err := f.Error(); err != nil {
				c.log.Warn("reconcile: add node to raft", "peer", m.name, "raft_addr", addr, "err", err)
				return
			}
			c.log.Info("reconcile: added node to raft", "peer", m.name, "raft_addr", addr, "voter", voter)
		}
	}
	if c.cfg.ReapAfter > 0 {
		if cfg, err := c.configuration(); err == nil { // the loop above may have changed it
			c.reap(cfg, time.Now())
		}
	}
}

// warmSpares keeps a warm authenticated Raft connection to every other voter (spares.go), so an election
// or a new leader's replication never waits for a handshake.
func (c *Cluster) warmSpares() {
	cfg, err := c.configuration()
	if err != nil {
		return
	}
	var addrs []string
	for _, s := range cfg.Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != c.cfg.NodeName {
			addrs = append(addrs, string(s.Address))
		}
	}
	c.trans.keepSpares(addrs)
}
