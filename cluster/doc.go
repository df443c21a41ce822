// Package cluster joins a vipd node to its peers: memberlist for membership, fast failure detection and
// gossiped health metadata; hashicorp/raft for a consensus decision on which node leads. The VIP manager
// (package vip) consumes the leadership API (WatchLeadership, Barrier, VerifyLeader, TransferLeadership).
//
// # Lifetime
//
// New only validates. Start opens the data dir, starts raft, memberlist and the background loops (join,
// gossip reconnect of failed members, bootstrap/reconcile, leadership fan-out). Leave departs gracefully
// (leadership transfer, removal from the raft configuration, gossip leave); Shutdown stops abruptly, as a
// crash would, and returns only when every goroutine Start started has ended.
//
// # Timing and the VIP's safety
//
// The VIP must never be held by two nodes. vip holds it only while this node is raft leader, so the old leader
// must learn that it is no longer leader before any other node can be elected. In hashicorp/raft v1.8.0:
//
//   - A follower re-arms a random timer in [HeartbeatTimeout, 2*HeartbeatTimeout) (runFollower) and starts an
//     election only when its last contact from the leader is at least HeartbeatTimeout old; with pre-vote (on by
//     default in v1.8 when the transport supports it, which NetworkTransport does) the other voters also refuse
//     while they still have a leader, i.e. until their own last contact is HeartbeatTimeout old. So no new
//     leader can exist earlier than HeartbeatTimeout after the majority last heard from the old leader.
//   - The leader runs checkLeaderLease on a timer: it steps down as soon as it has not heard from a quorum of
//     voters within LeaderLeaseTimeout (the next check is scheduled for when the oldest contact expires, at
//     least 10 ms later). It sends heartbeats every HeartbeatTimeout/10, so its record of the followers'
//     last contact is at most about HeartbeatTimeout/10 older than their record of it.
//
// The old leader therefore steps down at about lastContact + LeaseTimeout + 10 ms + HeartbeatTimeout/10, and
// the earliest new election completes at lastContact + HeartbeatTimeout + one vote round trip. LeaseTimeout =
// HeartbeatTimeout/2 leaves HeartbeatTimeout/2 - HeartbeatTimeout/10 - 10 ms (30 ms with the defaults) for
// scheduling delays; Config.validate enforces lease ≤ heartbeat ≤ election and this package's defaults keep the
// lease at half the heartbeat timeout. See DefaultHeartbeat for the measured figures behind the defaults.
package cluster
