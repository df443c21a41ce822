package cluster

import (
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Status is this node's view of the cluster, for `vipd status`.
type Status struct {
	Node string
	// State is raft's state: "Leader", "Follower", "Candidate" or "Shutdown".
	State string
	// Role is this node's place in the configuration (leader/follower/non-voter/none).
	Role RaftRole
	Term uint64
	// LeaderName and LeaderAddr (raft address) are empty when no leader is known.
	LeaderName, LeaderAddr string
	// LastContact is when a follower last heard from the leader; zero on the leader or before first contact.
	LastContact               time.Time
	CommitIndex, AppliedIndex uint64
	// Voters is the number of voters in the latest configuration.
	Voters int
	// Joined reports that a -join succeeded (or there was nothing to join).
	Joined bool
	// Problem, if set, is a condition an operator must fix (e.g. a duplicate node name, or -join pointing at
	// another cluster).
	Problem string
	// ClusterID identifies the cluster this node belongs to; empty until the first leader has assigned it and
	// this node has learned it (identity.go).
	ClusterID string
	// Security is how this node authenticates its peers ("mtls", "key", "mtls+key" or "insecure").
	Security SecurityMode
	// Refused counts refused Raft connections and RPCs, and gossip of invalid node names, since Start.
	Refused uint64
}

// Status reports this node's raft state. It is cheap enough for an admin API request.
func (c *Cluster) Status() Status {
	st := Status{Node: c.cfg.NodeName, State: raft.Shutdown.String(), Role: RoleNone, Joined: c.joined.Load(),
		ClusterID: c.localMeta().ClusterID, Security: c.mode, Refused: c.refused.total()}
	if p := c.problem.Load(); p != nil {
		st.Problem = *p
	}
	r := c.rft.Load()
	if r == nil {
		return st
	}
	state := r.State()
	st.State = state.String()
	addr, id := r.LeaderWithID()
	st.LeaderName, st.LeaderAddr = string(id), string(addr)
	if state != raft.Leader {
		st.LastContact = r.LastContact()
	}
	stats := r.Stats()
	st.Term, _ = strconv.ParseUint(stats["term"], 10, 64)
	st.CommitIndex = r.CommitIndex()
	st.AppliedIndex = r.AppliedIndex()
	if cfg, err := c.configuration(); err == nil {
		for _, s := range cfg.Servers {
			if s.Suffrage == raft.Voter {
				st.Voters++
			}
			if string(s.ID) == c.cfg.NodeName {
				st.Role = roleOf(s, state == raft.Leader)
			}
		}
	}
	return st
}

func roleOf(s raft.Server, leader bool) RaftRole {
	switch {
	case s.Suffrage != raft.Voter:
		return RoleNonVoter
	case leader:
		return RoleLeader
	default:
		return RoleFollower
	}
}

// Members lists every node this node has seen, including failed and departed ones (until ForceLeave), sorted
// by name, with gossip status, raft role, gossiped metadata and a mark on the leader.
//
// A member that memberlist still has alive is reported suspect once this node's probes of it have failed for
// longer than a probe round could explain (suspectAfter): memberlist v0.7 keeps its own suspect state
// private, and without this a freshly killed node would read alive until it is declared dead (about 3 s with
// 3 nodes). A member reachable only over TCP (UDP probes failing) reads suspect too.
func (c *Cluster) Members() []Member {
	recs := c.members.snapshot()
	live := map[string]memberlist.NodeStateType{}
	health := 0
	if ml := c.memberlist(); ml != nil {
		for _, n := range ml.Members() {
			live[n.Name] = n.State
		}
		health = ml.GetHealthScore()
	}
	peers := 0
	for _, rec := range recs {
		if rec.name != c.cfg.NodeName && rec.status == StatusAlive {
			peers++
		}
	}
	silent := suspectAfter(peers, health)
	now := time.Now()
	servers := map[string]raft.Server{}
	var leaderID string
	if r := c.rft.Load(); r != nil {
		_, id := r.LeaderWithID()
		leaderID = string(id)
		if cfg, err := c.configuration(); err == nil {
			for _, s := range cfg.Servers {
				servers[string(s.ID)] = s
			}
		}
	}
	out := make([]Member, 0, len(recs))
	for _, rec := range recs {
		m := Member{Name: rec.name, Addr: rec.addr, Status: rec.status, Meta: rec.meta.Meta, Role: RoleNone,
			Security: rec.meta.Security}
		if rec.name == c.cfg.NodeName {
			m.Meta, m.Security = c.localMeta().Meta, c.mode
		}
		if m.Status == StatusAlive && rec.name != c.cfg.NodeName &&
			(live[rec.name] == memberlist.StateSuspect || now.Sub(rec.heard) > silent) {
			m.Status = StatusSuspect
		}
		if s, ok := servers[rec.name]; ok {
			m.Role = roleOf(s, rec.name == leaderID)
		}
		m.Leader = rec.name == leaderID && leaderID != ""
		out = append(out, m)
	}
	return out
}

// suspectAfter is how long a member may go without a successful probe before Members calls it suspect.
// memberlist probes one peer per probe interval, in an order reshuffled every round, so two probes of one of
// p peers can be up to 2p-1 intervals apart; the ack takes up to the probe timeout. memberlist stretches the
// interval by its local health score (awareness) when this node itself is slow, and so does this.
func suspectAfter(peers, healthScore int) time.Duration {
	p := max(peers, 1)
	return time.Duration(healthScore+1)*time.Duration(2*p)*gossipProbeInterval + gossipProbeTimeout
}

// gossipAddr is this node's advertised gossip address.
func (c *Cluster) gossipAddr() string {
	return net.JoinHostPort(c.cfg.AdvertiseAddr, strconv.Itoa(c.cfg.GossipPort))
}
