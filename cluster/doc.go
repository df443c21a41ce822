// Package cluster joins a vipd node to its peers: memberlist for membership, fast failure detection and
// gossiped health metadata; hashicorp/raft for a consensus decision on which node leads. The VIP manager
// (package vip) consumes the leadership API (WatchLeadership, Barrier, VerifyLeader, TransferLeadership).
//
// # Lifetime
//
// New validates the configuration and reads every file it names (the cluster key, the TLS files), so a bad
// file is refused before anything listens. Start opens the data dir, loads the keyring, starts raft (over the
// authenticated transport), memberlist and the background loops (join, gossip reconnect of failed members,
// bootstrap/reconcile, leadership fan-out, and in insecure mode the hourly warning). Leave departs
// gracefully (leadership transfer, removal from the raft configuration, gossip leave); Shutdown stops
// abruptly, as a crash would, and returns only when every goroutine Start started has ended.
//
// # Timing and the VIP's safety
//
// The VIP must never be held by two nodes. vip holds it only while this node is raft leader, so the old leader
// must learn that it is no longer leader before any other node can be elected. In hashicorp/raft v1.8.0:
//
//   - A follower re-arms a random timer in [HeartbeatTimeout, 2*HeartbeatTimeout) (runFollower) and starts an
//     election only when its last contact from the leader is at least HeartbeatTimeout old; with pre-vote (on by
//     default in v1.8 when the transport supports it, which this package's transport does: it embeds raft's
//     NetworkTransport, whose RequestPreVote it keeps) the other voters also refuse while they still have a
//     leader, i.e. until their own last contact is HeartbeatTimeout old. So no new leader can exist earlier
//     than HeartbeatTimeout after the majority last heard from the old leader.
//   - The leader runs checkLeaderLease on a timer: it steps down as soon as it has not heard from a quorum of
//     voters within LeaderLeaseTimeout (the next check is scheduled for when the oldest contact expires, at
//     least 10 ms later). It sends heartbeats every HeartbeatTimeout/10, so its record of the followers'
//     last contact is at most about HeartbeatTimeout/10 older than their record of it.
//
// The old leader therefore steps down at about lastContact + LeaseTimeout + 10 ms + HeartbeatTimeout/10, and
// the earliest new election completes at lastContact + HeartbeatTimeout + one vote round trip. LeaseTimeout =
// HeartbeatTimeout/2 leaves HeartbeatTimeout/2 - HeartbeatTimeout/10 - 10 ms (30 ms with the defaults) for
// scheduling delays; Config.validate enforces lease ≤ heartbeat ≤ election (each at most MaxTimeout) and this
// package's defaults keep the lease at half the heartbeat timeout. See DefaultHeartbeat for the measured
// figures behind the defaults.
//
// Authentication does not change this argument. It adds work only before a connection's first RPC (a
// handshake, about 1.5 ms on loopback, BenchmarkHandshake), never to an RPC on an established connection,
// and the inbound side serves heartbeats on raft's fast path (SetHeartbeatHandler) exactly as raft's own
// transport does. A handshake delays one RPC as a slow network would: the follower's contact and the
// leader's record of it (taken when the response arrives, one round trip later) move together, so the
// margin above is unchanged. To keep handshakes off the failover path, every node holds a warm
// authenticated spare connection to every other voter (spares.go), which raft gets when a candidate asks a
// peer for a vote or a new leader opens replication.
//
// # Security model
//
// Whoever can reach the gossip port (7946 tcp/udp) and the Raft port (7947 tcp) of a node is either a member
// or a stranger. A node runs in one of four modes (SecurityMode), reported by Status, Members and gossip:
//
//   - "key": a cluster key (16, 24 or 32 random bytes, `vipd keygen`) is shared by the members. Gossip is
//     encrypted and authenticated with it by memberlist (AES-GCM, GossipVerifyIncoming/Outgoing), so a
//     stranger's packets are dropped and it reads nothing. Raft connections are authenticated as below.
//   - "mtls": every node has a certificate from the cluster CA naming it (SAN DNS or URI, internal/pki).
//     Raft runs over mutual TLS 1.3; gossip runs over mutual TLS too (internal/tlsgossip). Certificates and
//     the CA are re-read when their files change.
//   - "mtls+key": Raft connections need both the certificate and the key (the name proven with the key must be
//     one the certificate names); gossip uses the key.
//   - "insecure": explicitly asked for (Config.Insecure): plain TCP and plain gossip, as before; anyone who
//     reaches the ports can read the term, vote, move leadership and rewrite the configuration. The node says
//     so in its log at start and every hour.
//
// Outside Dev a node refuses to start without one of key, TLS or Insecure; a Dev node with none makes a
// throw-away key, so even it answers nobody else.
//
// # The Raft handshake with a key
//
// The client opens TLS 1.3 to the server, which presents a throw-away self-signed certificate made at start
// (nobody verifies it). Both sides derive EKM = ExportKeyingMaterial(proofLabel, nil, 32), a value unique to
// this TLS connection that only its two endpoints know. The client sends its node name and, for each key it
// holds, the key's fingerprint (KeyFingerprint) and HMAC-SHA256(K', EKM || 'C' || name), where K' =
// HMAC-SHA256(key, "vipd raft auth key v1"). The server looks for a proof made with a key it holds; only if
// one verifies does it answer with its own name and proofs (role 'S'), else it closes the connection. The
// client verifies the server's proof the same way. Neither side sends or decodes a Raft RPC before the
// other's proof verified, and every RPC's header ID must then be the proven name (rpcserver.go). Why this is
// sound:
//
//   - Man in the middle: an attacker between two members terminates two TLS connections, with two different
//     EKMs. A proof is bound to the EKM of the connection it was made on, so relaying one to the other side
//     fails, and making one needs the key. Without the key it can neither read (TLS) nor pass the proof.
//   - Replay: EKM is fresh for every connection (both sides' TLS randomness and ephemeral key shares), so a
//     recorded proof verifies on no other connection.
//   - Reflection: the role byte differs between the client's and the server's proof, so a server cannot
//     return the client's proof as its own (and vice versa), even on the same connection.
//   - Impersonation among members: the proof covers the name, so a proof for one name is not one for another;
//     a member holding the key can still prove any name (the key is shared, so key holders are trusted
//     alike). With mTLS the name comes from the CA-signed certificate and a member can only be itself.
//   - What a stranger learns: connecting to the Raft port, the throw-away certificate (random) and nothing
//     more: the server sends no byte of its own before the stranger's proof verified, so not the term, not the
//     index, not even the node's name. A stranger the client dials (an impostor at a member's address)
//     learns the client's name, key fingerprints (the first 32 bits of SHA-256 of random keys) and a MAC over
//     its own EKM, which it can only test key guesses against offline: infeasible for 128-bit random keys,
//     which is why keys are random bytes and never passwords.
//   - Denial of service: handshakes run off the accept loop with a 5 s deadline, at most 64 at a time and 8
//     per peer address; refusals are counted (Status.Refused) and logged once per peer IP per minute with the
//     reason.
//
// # Keyring and rotation
//
// A node holds several accepted keys and one primary (keyring.go). The keyring changes by a Raft log entry
// carrying the whole next keyring, so every node applies the same sequence, and is persisted in
// <data-dir>/keyring (0600, written atomically), which takes precedence over the configured key at start.
// InstallKey, UseKey and RemoveKey are leader-only (a follower forwards them over the authenticated Raft
// port); UseKey refuses unless every alive member gossips that it holds the key, RemoveKey refuses the
// primary of any alive member. Since a handshake proves every installed key and accepts any, no two nodes
// need to switch at the same instant, and a rotation moves no leadership. A removed key authenticates no new
// connection; connections made before the removal stay up until they close (spares live at most 5 minutes;
// raft's own connections until an error or a restart), so after a suspected key leak restart the nodes one
// by one once the rotation is done. A node that was down during a whole rotation holds only the removed key:
// give it the new key in its key file and remove its <data-dir>/keyring before starting it.
//
// # Membership
//
// Node names are [A-Za-z0-9._-]{1,63} (ValidNodeName); gossip of any other name is refused. The leader adds
// a gossip member to Raft only after it has dialed the member's gossiped Raft address and the handshake
// authenticated the member's own name there (admission.go), so gossip alone never makes a voter. With
// ReapAfter, a voter failed in gossip for that long is removed if the remaining voters keep a quorum.
package cluster
