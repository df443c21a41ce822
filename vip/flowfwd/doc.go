// Package flowfwd is the kernel half of a planned VIP move that resets no connection (GitHub GLB Director's
// "second chance"): while the old holder drains, the new holder hands every TCP segment for a VIP's
// frontends that belongs to none of its own connections to the old holder, at layer 2, and keeps the rest.
//
// # The move
//
// The old holder stops answering ARP/NDP for the VIP but keeps the address on lo (so its stack still
// accepts packets for it) and keeps serving its established connections. The new holder takes the VIP as
// usual, so every client packet now reaches it. With this package's rules it sends each segment of an old
// flow on to the old holder, destination unchanged; the old holder's replies go straight to the client. New
// connections (SYNs) stay on the new holder. Nothing is rewritten and no tunnel is built: both holders are on
// the same link and the old holder accepts the VIP because it is on its lo.
//
// # The rules
//
// One table "vipd" per family (ip and ip6), each with one chain at prerouting, priority mangle (-150: after
// conntrack at -200, so the conntrack mark is there; before DNAT at -100, so the destination is still the
// VIP), holding up to three rules:
//
//	mark     tcp to VIP:port, flags (fin|syn|rst|ack) == syn   → ct mark |= CtMark            (Mark)
//	local    tcp to VIP:port, ct mark has CtMark               → accept                       (Forward)
//	forward  tcp to VIP:port, no SYN, socket lookup finds only
//	         a wildcard listener                               → dup to PEER device IF; drop  (Forward)
//
// A segment is forwarded only when both tests say the flow is not local: its first packet was not a SYN
// seen here (no mark), and the stack has no socket for it (the lookup that the TCP receive path is about to
// do finds no established, request or time-wait socket — only the listener, which would answer RST).
//
// # Why a socket lookup and a mark, and not the mark alone
//
// conntrack's nf_conntrack_tcp_loose=1 (the default, and the tests run with it) picks up a mid-stream
// segment as a new established entry, so "ct state new" cannot tell an unknown flow. A mark set on the
// flow's first packet can — but not for every segment:
//
//   - A mid-stream FIN or RST creates no conntrack entry at all (loose pick-up refuses them), so the packet
//     has no mark to test. The old flows' FIN and RST must reach the old holder, or it keeps their sockets
//     (and the client's FIN would be answered with RST here). The lookup finds no socket: forwarded.
//   - A segment conntrack's window tracking finds out of window loses its conntrack entry too. For a local
//     flow it must stay local: the old holder would answer it with a RST whose sequence number the client
//     may accept, killing a healthy local connection. The lookup finds the local socket: kept.
//   - Flows this node accepted before Mark existed, or before conntrack tracked anything in the namespace
//     (nothing does until some rule uses it), and conntrack entries older than the mark rule (this node held
//     the VIP earlier; established entries live for five days) carry no mark. Their sockets keep them local.
//
// The mark is still needed for one case: a handshake completed through a SYN cookie leaves no request
// socket between the SYN-ACK and the client's ACK, so the lookup sees only the listener, and the ACK would
// go to the old holder, which resets it. The SYN's mark keeps it local (TestSYNCookieHandshakes shows both).
// The socket lookup needs the proxy to listen on the wildcard address (vipd's default "-listen :6443"); a
// listener bound to one address makes every lookup report "not wildcard", and nothing is forwarded — today's
// RST for old flows, never a wrong forward. The proxy cannot listen on the VIP itself anyway (it binds before
// it holds the VIP).
//
// # Why dup in ip/ip6 prerouting, not fwd in netdev ingress
//
// Both load on these kernels, but netdev ingress runs before conntrack (no mark) and the kernel refuses the
// socket expression there (ip, ip6 and inet only), so an ingress rule cannot tell known from unknown flows.
// "dup to PEER device IF" clones the packet and sends the copy with ip_local_out to PEER as the next hop
// (like iptables TEE --gateway), so it needs no ip_forward (containers run with 0; the tests set 0 on both
// holders) and leaves the destination address alone; the copy is untracked and its TTL/hop limit is
// decremented. The "drop" after it discards the original before the local stack can answer it with RST.
//
// # Edge cases
//
//   - Flows the new holder accepted before the forward rule existed stay local: marked by their SYN if Mark
//     was there, known to the socket lookup in any case (TestFlowsAcceptedBeforeForwardStayLocal).
//   - RST and FIN of old flows are forwarded (see above); the old holder frees those sockets.
//   - A retransmitted SYN always stays local: if the client never got the old holder's SYN-ACK, it now gets
//     the new holder's, and the old holder's half-open request times out. Any SYN re-marks its conntrack
//     entry as local, even an entry that outlived an earlier connection with the same ports.
//   - TIME_WAIT: a segment for a flow this node closed less than 60 s ago finds the time-wait socket and stays
//     local. If that client reused the same source port, within that minute, for a connection to the old
//     holder that is still draining, that connection stalls — every design that asks the local stack shares
//     this, and it needs two moves and a port reuse within a minute.
//   - ICMP is left alone: only TCP segments are matched. ICMP errors about the old holder's replies (which
//     carry the VIP as source) reach the new holder and are dropped there, so a path-MTU change during the
//     drain is not seen by the old flows; on one LAN with one MTU there is none.
//   - IPv4 and IPv6 work alike (meta l4proto sees through IPv6 extension headers); dual stack needs one Forward
//     per family, each with the peer's address in that family.
//   - The draining peer's own rules: it held the VIP, so its Mark rules stay and keep marking nothing new
//     (forwarded segments are never SYNs) — harmless, and they keep its own flows' marks valid if the VIP
//     comes back. It must hold no Forward: it holds no VIP. Two nodes forwarding to each other would bounce a
//     segment that neither knows until its TTL runs out (each dup decrements it); the agent must never let
//     a node that does not hold the VIP keep a Forward.
//   - A dead peer swallows what is forwarded to it: the clients' retransmissions hang until StopForward,
//     after which the next retransmission gets this node's RST. The agent must call StopForward as soon as
//     gossip suspects the peer, so a crashed old holder costs its flows the failure-detection time, not a hang.
//   - Each forwarded segment costs a short-lived conntrack entry (created at -200, freed with the dropped
//     original) and a socket lookup; local flows pay the mark rule's and the local rule's matches
//     (see TestForwardingCost for figures).
//
// # Using it
//
// New at start (it removes tables a crashed earlier run left), Mark before the node may take traffic for the
// VIPs and for as long as it may hold them, Forward while this node holds the VIPs and a peer drains,
// StopForward when the peer has drained, leaves or is suspected dead, or this node stops holding the VIPs,
// and Close at exit. Every call is idempotent and level-triggered (a repeated call restores rules someone
// removed); a Table is safe for concurrent use.
//
// Order matters on a planned move: Forward must be in place before the new holder answers ARP/NDP for the
// VIP or announces it, or the first segments of old flows meet its RST. Clients whose neighbour cache still
// points at the old holder keep reaching it meanwhile; even a connection they open then is the old holder's,
// and is forwarded like the others once their cache moves.
package flowfwd
