// Package vip holds the floating virtual IP on exactly one node: the healthy Raft leader.
//
// # Where the address lives
//
// The VIP is added to the loopback interface as a host prefix (/32 or /128, IPv4 label "lo:vip"), never
// to the announcing interface, and that interface runs with arp_ignore=1 / arp_announce=2. The kernel
// therefore accepts traffic for the VIP but never answers ARP (or, for IPv6, neighbour solicitations) for
// it. Only the live vipd process does, through [Kernel.Answer], and it announces the VIP with gratuitous
// ARP / unsolicited neighbour advertisements through [Kernel.Announce]. A SIGKILLed, panicking or hung
// (docker pause) holder thus stops attracting traffic the moment it stops running, and the new leader's
// announcements move every client's neighbour cache to its MAC. This is what keepalived cannot do: its
// crashed master keeps answering ARP from the kernel for as long as the address stays configured.
//
// # Who holds it
//
// [Manager] owns the VIP. One goroutine watches Raft leadership ([Leadership], with the term); on becoming
// leader it first commits a barrier (proof that it leads the current term), checks local health, then adds
// the address, starts answering and announces (a burst, then a periodic refresh that is also a level check:
// an address someone removed is put back). While holding it confirms leadership with a quorum every
// VerifyInterval. It releases — stop answering, remove the address — before anything else the moment it may
// no longer lead: leadership lost, leadership observed in a new term (lost and won back in between: a fresh
// barrier decides), a refused VerifyLeader, a transfer, shutdown. [Manager.Subscribe] signals every change
// of [Manager.Held], for the gossiped metadata.
//
// Health gating: an unhealthy leader hands leadership to a healthy peer (highest Priority first). If no
// peer is healthy the leader keeps the VIP on purpose: an address that points at an unhealthy proxy
// recovers the instant a backend returns, whereas no address cannot recover until an election.
//
// Witness nodes vote but never hold the VIP: they transfer leadership away as soon as they win it.
//
// # Safety timing
//
// Holding the address is not what must be exclusive: answering for it is. Every ARP/NDP reply and
// announcement is gated on a recent proof of leadership (the fence), and Config derives that gate from the
// Raft heartbeat timeout it is given, because of this argument:
//
//   - A Barrier that started at t and committed shows that a quorum of voters heard from this leader at or
//     after t (only answers to requests carrying the barrier entry commit it). A VerifyLeader does not show
//     that much about its own start: raft counts an answer to a heartbeat sent before the call, which is what
//     a leader resuming from a pause reads first. So VerifyLeader returns t itself — for the cluster, the send
//     time of the acknowledged heartbeats that make the quorum (package cluster, lease.go) — and the fence
//     counts from that.
//   - A voter starts an election, or votes for another candidate, only once it has not heard from its leader
//     for RaftHeartbeat (raft's follower timer and leader stickiness; pre-vote too). Any quorum that elects a
//     new leader shares a voter with the one above, so no new leader can exist before t + RaftHeartbeat.
//   - The Manager answers and announces only until t + AnswerWindow. AnswerWindow ≤ RaftHeartbeat therefore
//     never overlaps a new leader — even for a holder that was paused, resumed, and has not yet seen that it
//     was deposed. The default is AnswerWindow = RaftHeartbeat.
//   - A new proof is started every VerifyInterval; 2 × VerifyInterval ≤ AnswerWindow lets one arrive before
//     the previous window closes, so a healthy holder never falls silent. The default is AnswerWindow/3:
//     three proofs per window, so one slow round costs nothing. A slow VerifyLeader is retried, not taken as
//     a refusal: the fence already silences the holder, and Raft's lease steps a cut-off leader down.
//
// The argument covers elections started by a timeout. A leadership transfer skips the wait (the target
// campaigns at once, and voters ignore stickiness for it), so the Manager always releases before it
// transfers, and nothing else may transfer leadership away from a holder. NewManager enforces
// 2 × VerifyInterval ≤ AnswerWindow ≤ RaftHeartbeat. Package cluster's documentation argues the other half:
// a cut-off leader steps down (lease < heartbeat) before a majority can elect.
package vip
