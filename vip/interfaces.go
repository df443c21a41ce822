package vip

import (
	"context"
	"net/netip"
	"time"
)

// Kernel is the only code that touches netlink and raw sockets, so that the leadership logic in
// [Manager] can be unit-tested against an in-memory fake (see package viptest).
//
// AddAddr, DelAddr and HasAddr are idempotent (adding a present or deleting an absent address is not
// an error). Announce and the address methods may be called concurrently with a running Answer.
// Implementations must be safe for concurrent use.
type Kernel interface {
	// AddAddr configures p's address on this host (a host prefix on lo for LinuxKernel).
	AddAddr(p netip.Prefix) error
	// DelAddr removes p's address from this host.
	DelAddr(p netip.Prefix) error
	// HasAddr reports whether p's address is currently configured, for the level-triggered check.
	HasAddr(p netip.Prefix) (bool, error)
	// Announce sends one gratuitous ARP (request and reply form) for an IPv4 ip, or one unsolicited
	// neighbour advertisement with the Override flag for an IPv6 ip, so neighbours move to our MAC.
	Announce(ip netip.Addr) error
	// Answer answers ARP requests and neighbour solicitations for ips until ctx is done, then returns
	// nil with every goroutine it started ended. It returns early with an error if it cannot listen.
	// It sends a reply only while allow() is true (checked per reply: see fence).
	Answer(ctx context.Context, ips []netip.Addr, allow func() bool) error
}

// Cleaner is optionally implemented by a Kernel that can find VIPs left behind by a crashed earlier
// run even if they are no longer configured (LinuxKernel removes every "lo:vip" address). Manager.Run
// calls it once before anything else.
type Cleaner interface {
	Cleanup() error
}

// Forwarder is optionally implemented by a Kernel that can hand a planned VIP move over without resetting a
// connection (vip/flowfwd on Linux): the old holder keeps the address to serve its open flows (Drain) while
// the successor sends it every packet of a flow the successor does not know (Forward). Methods are safe for
// concurrent use.
type Forwarder interface {
	// Mark makes this node remember which flows to ips:ports it accepted itself (their first packet was a
	// SYN here). It must be in place before the node takes traffic for the VIP; idempotent.
	Mark(ips []netip.Addr, ports []uint16) error
	// Drain keeps p's address configured so this node serves the flows it has, as a non-holder: it no
	// longer answers ARP/NDP for it. DelAddr ends the drain.
	Drain(p netip.Prefix) error
	// Forward sends every packet for ips:ports that belongs to no flow of this node to the peer (at one of
	// peers, one address per family), at L2, the destination unchanged; it replaces an earlier Forward.
	Forward(peers []netip.Addr, ips []netip.Addr, ports []uint16) error
	// StopForward removes the forwarding; the Mark rules stay.
	StopForward() error
	// Established counts this node's open TCP connections on ips:ports. With deadAfter > 0 a connection
	// that has waited that long for its client to acknowledge anything is reset instead: while this node
	// drains, its successor forwards the client's packets here, so such silence means the client is gone.
	Established(ips []netip.Addr, ports []uint16, deadAfter time.Duration) (int, error)
	// SegmentAddrs returns this node's addresses on the segment of ips (where a successor forwards to).
	SegmentAddrs(ips []netip.Addr) ([]netip.Addr, error)
}

// FlowResetter is a Kernel that can reset this node's TCP connections on ips:ports (sock_diag's
// SOCK_DESTROY), once no packet of theirs can reach it any more: the address is gone from this node and no
// successor forwards to it. A stopping node resets them at once, with hand-over drains or without, instead of
// leaving them to TCP's timers (up to 15 minutes) while its proxy drains. Safe for concurrent use.
type FlowResetter interface {
	// Reset resets the connections and returns how many.
	Reset(ips []netip.Addr, ports []uint16) (int, error)
}

// Drain is another node's hand-over drain under way: while it lasts, the node that took the VIP over from it
// forwards the flows it does not know to Addrs.
type Drain struct {
	Node  string
	Addrs []netip.Addr
	// Epoch orders drains: the latest one is the hand-over to this node.
	Epoch uint64
}

// Peer is another cluster member as seen through gossip metadata; the Manager chooses transfer targets
// among peers.
type Peer struct {
	// Name is the node name passed to Leadership.TransferLeadership.
	Name string
	// Healthy is the peer's own node health: every frontend healthy (listener up and enough healthy backends).
	Healthy bool
	// Score is how many of its frontends are healthy: between two peers that are not fully healthy, the one
	// with the higher Score serves more (see peers.go for the ranking).
	Score int
	// Priority prefers a node: a higher value wins transfers and preemption.
	Priority int
	// Voter is true for Raft voters; only voters can become leader.
	Voter bool
	// Witness marks a vote-only node that never holds the VIP, so it is never a transfer target.
	Witness bool
}

// LeaderState is one observation of this node's Raft leadership.
type LeaderState struct {
	// Leader is true while this node is Raft leader.
	Leader bool
	// Term is the Raft term of that leadership. Each time a node becomes leader it is in a new, higher term, so
	// two true observations with different terms mean leadership was lost and won back in between, even if
	// the false in the middle was never seen. Meaningful only when Leader is true; an implementation that
	// cannot tell terms apart reports 0 throughout, and the Manager then treats every true as the same term.
	Term uint64
}

// Leadership is the Manager's view of Raft, satisfied by an adapter over *cluster.Cluster.
//
// All methods must be safe for concurrent use. The methods that take a ctx return soon after ctx is done,
// with an error that wraps ctx.Err(): the Manager bounds Barrier and TransferLeadership by BarrierTimeout and
// VerifyLeader by twice VerifyInterval, and its shutdown waits for a VerifyLeader in flight.
type Leadership interface {
	// WatchLeadership returns a channel delivering the latest leadership state — the current state first,
	// never a stale one: an unread state is replaced, not queued — and a function that stops the watch. A
	// closed channel means leadership can no longer be known (the Manager treats it as lost).
	WatchLeadership() (<-chan LeaderState, func())
	// Barrier commits a barrier entry: success proves this node leads the current term and has
	// applied everything before it.
	Barrier(ctx context.Context) error
	// VerifyLeader confirms with a quorum that this node is still leader, and returns the time since which
	// every member of that quorum is known to have heard from it — for the cluster, the send time of the
	// acknowledged heartbeats, which after a pause can be long before the call: the answer fence counts
	// from it (fence.go), never from the call.
	VerifyLeader(ctx context.Context) (time.Time, error)
	// TransferLeadership hands leadership to toNode ("" = any suitable voter) and returns once done
	// or failed.
	TransferLeadership(ctx context.Context, toNode string) error
	// StartDrain records that this node, still leader, starts draining its flows at addrs, so that a
	// successor sees it before it acquires the VIP (its Barrier applies the record); it returns the
	// drain's epoch.
	StartDrain(ctx context.Context, addrs []netip.Addr) (uint64, error)
	// ActiveDrains returns the other nodes' drains under way (the node alive, not yet done), oldest first.
	ActiveDrains() []Drain
	// Peers returns the other cluster members (never this node) with their gossiped health.
	Peers() []Peer
}

// NodeHealth is this node's own health as the Manager needs it. It mirrors the fields of
// health.NodeStatus that matter here, so that package vip depends on nothing outside itself; the agent
// adapts *health.Node to HealthSource.
type NodeHealth struct {
	// Healthy is true when every frontend is healthy: its listener up and enough of its backends healthy.
	Healthy bool
	// Score is how many frontends are healthy. An unhealthy holder hands leadership only to a peer that is
	// Healthy or has a strictly higher Score, so a partial failure never moves the VIP to a node no better.
	Score int
	// Reason explains an unhealthy state, for logs.
	Reason string
}

// HealthSource reports this node's health and signals changes. Safe for concurrent use.
type HealthSource interface {
	// Status returns the current health; it must be cheap.
	Status() NodeHealth
	// Subscribe returns a capacity-1 channel that receives a value when health may have changed (the
	// receiver re-reads Status), and a function that stops the subscription.
	Subscribe() (<-chan struct{}, func())
}
