package cluster

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip tuning for a LAN. Raft, not memberlist, decides leadership, so these only bound how quickly
// `vipd members` and the health metadata reflect a failure and how fast metadata spreads; they are kept well
// above scheduling noise on a loaded machine so suspicion does not flap.
const (
	gossipProbeInterval = 500 * time.Millisecond
	gossipProbeTimeout  = 200 * time.Millisecond
	gossipInterval      = 50 * time.Millisecond
	gossipPushPull      = 10 * time.Second
	gossipTCPTimeout    = 2 * time.Second
	gossipLeaveTimeout  = time.Second
)

// MemberStatus is a node's gossip status.
type MemberStatus string

// Gossip statuses, as `vipd members` prints them.
const (
	StatusAlive   MemberStatus = "alive"
	StatusSuspect MemberStatus = "suspect"
	StatusDead    MemberStatus = "dead"
	StatusLeft    MemberStatus = "left"
)

// RaftRole is a node's place in the raft configuration.
type RaftRole string

// Raft roles, as `vipd members` prints them.
const (
	RoleLeader   RaftRole = "leader"
	RoleFollower RaftRole = "follower"
	RoleNonVoter RaftRole = "non-voter"
	RoleNone     RaftRole = "none"
)

// Member is one row of `vipd members`.
type Member struct {
	Name   string
	Addr   string // gossip address host:port
	Status MemberStatus
	Role   RaftRole
	Meta   Meta
	// Leader marks the node this node believes leads raft.
	Leader bool
	// Security is the security mode the member gossips ("" from a vipd without one).
	Security SecurityMode
}

// memberRecord is what the event delegate remembers about a node, including dead and left ones, which
// memberlist's own Members() omits.
type memberRecord struct {
	name   string
	addr   string
	meta   wireMeta
	status MemberStatus
	// heard is when this node last had proof that the member is up: a direct probe ack (PingDelegate), or
	// a join/update event.
	heard time.Time
}

// memberTable is fed by memberlist's event delegate. Callbacks run with memberlist's locks held: they only
// update this table and signal, never call back into memberlist.
type memberTable struct {
	mu    sync.Mutex
	nodes map[string]*memberRecord
}

func newMemberTable() *memberTable { return &memberTable{nodes: map[string]*memberRecord{}} }

func (t *memberTable) upsert(n *memberlist.Node, st MemberStatus) {
	meta, _ := decodeMeta(n.Meta) // undecodable meta (foreign node) reads as empty: never added to raft
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nodes[n.Name] = &memberRecord{name: n.Name, addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), meta: meta, status: st,
		heard: time.Now()}
}

// acked records a successful probe of name.
func (t *memberTable) acked(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r, ok := t.nodes[name]; ok {
		r.heard = time.Now()
	}
}

func (t *memberTable) forget(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.nodes[name]
	delete(t.nodes, name)
	return ok
}

func (t *memberTable) snapshot() []memberRecord {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]memberRecord, 0, len(t.nodes))
	for _, r := range t.nodes {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (t *memberTable) get(name string) (memberRecord, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.nodes[name]
	if !ok {
		return memberRecord{}, false
	}
	return *r, true
}

// delegate implements memberlist's Delegate, EventDelegate, ConflictDelegate, AliveDelegate and
// MergeDelegate for a Cluster.
type delegate struct{ c *Cluster }

var (
	_ memberlist.Delegate         = delegate{}
	_ memberlist.EventDelegate    = delegate{}
	_ memberlist.ConflictDelegate = delegate{}
	_ memberlist.AliveDelegate    = delegate{}
	_ memberlist.MergeDelegate    = delegate{}
	_ memberlist.PingDelegate     = delegate{}
)

// AckPayload adds nothing to probe acks.
func (delegate) AckPayload() []byte { return nil }

// NotifyPingComplete records that a probe of other succeeded; Members uses it to report suspect, which
// memberlist v0.7 does not expose (Node.State is never set by Members()).
func (d delegate) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	d.c.members.acked(other.Name)
}

// NotifyAlive refuses alive messages about nodes with an invalid name or of another cluster, so they never
// enter the member list (and so never raft), whoever relays them.
func (d delegate) NotifyAlive(n *memberlist.Node) error { return d.c.checkPeer(n) }

// NotifyMerge refuses a join (on both sides of the push-pull) if any node in the other side's state has an
// invalid name or belongs to another cluster.
func (d delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.c.checkPeer(n); err != nil {
			return err
		}
	}
	return nil
}

// ErrInvalidNodeName is returned by the gossip delegates for a node whose name breaks ValidNodeName.
var ErrInvalidNodeName = errors.New("invalid node name")

// checkPeer is the alive/merge delegates' filter. It runs under memberlist's locks: it only reads local
// state, logs and records.
func (c *Cluster) checkPeer(n *memberlist.Node) error {
	if !ValidNodeName(n.Name) {
		addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
		// %q escapes the name: it may hold terminal escapes.
		err := fmt.Errorf("%w %q from %s: names are 1-%d characters from A-Z a-z 0-9 . _ -", ErrInvalidNodeName, n.Name, addr, maxNodeName)
		c.refused.refused(addr, "invalid node name in gossip", err)
		return err
	}
	return c.checkCluster(n)
}

func (d delegate) NodeMeta(limit int) []byte {
	d.c.metaMu.Lock()
	defer d.c.metaMu.Unlock()
	if len(d.c.metaB) > limit {
		return nil
	}
	return append([]byte(nil), d.c.metaB...)
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

func (d delegate) NotifyJoin(n *memberlist.Node) {
	d.c.members.upsert(n, StatusAlive)
	d.c.kickNow()
}

func (d delegate) NotifyUpdate(n *memberlist.Node) {
	d.c.members.upsert(n, StatusAlive)
	d.c.kickNow()
}

// NotifyLeave fires for failed and departed nodes alike: memberlist v0.7 does not set n.State here (it tracks
// the state in its private nodeState), so a node counts as left if its last gossiped metadata said it was
// leaving, which Leave sets before leaving gossip.
func (d delegate) NotifyLeave(n *memberlist.Node) {
	st := StatusDead
	if m, err := decodeMeta(n.Meta); n.State == memberlist.StateLeft || (err == nil && m.Leaving) {
		st = StatusLeft
	}
	d.c.members.upsert(n, st)
	d.c.kickNow()
}

// NotifyConflict is called when two live nodes claim one name. If the conflict is about this node's own name
// before it has joined, this node is the newcomer: it records ErrDuplicateName and stops gossiping (maintain
// shuts memberlist down) so the running cluster is not disturbed.
func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	c := d.c
	if existing.Name == c.cfg.NodeName && !c.joined.Load() {
		c.setProblem("%v: node %q already exists at %s; give this node a unique -node", ErrDuplicateName, other.Name,
			net.JoinHostPort(other.Addr.String(), strconv.Itoa(int(other.Port))))
		c.kickNow()
	}
	c.log.Error("two nodes claim the same -node name; each node needs a unique -node", "name", existing.Name,
		"existing", net.JoinHostPort(existing.Addr.String(), strconv.Itoa(int(existing.Port))),
		"other", net.JoinHostPort(other.Addr.String(), strconv.Itoa(int(other.Port))))
}

func (c *Cluster) startMemberlist() (*memberlist.Memberlist, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = c.cfg.NodeName
	mc.BindAddr = c.cfg.BindAddr
	mc.BindPort = c.cfg.GossipPort
	mc.AdvertiseAddr = c.cfg.AdvertiseAddr
	mc.AdvertisePort = c.cfg.GossipPort
	mc.ProbeInterval = gossipProbeInterval
	mc.ProbeTimeout = gossipProbeTimeout
	mc.GossipInterval = gossipInterval
	mc.PushPullInterval = gossipPushPull
	mc.TCPTimeout = gossipTCPTimeout
	mc.Logger = newStdLogger(c.log, "memberlist")
	d := delegate{c}
	mc.Delegate, mc.Events, mc.Conflict, mc.Alive, mc.Merge, mc.Ping = d, d, d, d, d, d
	if c.keys != nil {
		// AES-GCM with the cluster keyring, and nothing unencrypted in either direction.
		mc.Keyring = c.keys.memberlist()
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	nt, err := c.gossipTransport(mc)
	if err != nil {
		return nil, err
	}
	if f := c.cfg.Partition.filter(); f != nil {
		mc.Transport = &filteredTransport{NodeAwareTransport: nt, filter: f}
	} else {
		mc.Transport = nt
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		nt.Shutdown()
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	return ml, nil
}

// gossipTransport is memberlist's own UDP+TCP transport, or, with certificates and no key, gossip over
// mutual TLS.
func (c *Cluster) gossipTransport(mc *memberlist.Config) (memberlist.NodeAwareTransport, error) {
	if c.mode == ModeMTLS {
		return c.tlsGossipTransport()
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{c.cfg.BindAddr},
		BindPort:  c.cfg.GossipPort,
		Logger:    mc.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("gossip listen on %s port %d (is the bind address one of this host's, and the port free?): %w",
			c.cfg.BindAddr, c.cfg.GossipPort, err)
	}
	return nt, nil
}
