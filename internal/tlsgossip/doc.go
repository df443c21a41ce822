// Package tlsgossip is a memberlist transport (memberlist.NodeAwareTransport) that carries all gossip over
// mutual TLS on one TCP port, for clusters secured by certificates alone: without it anyone on the segment
// could join gossip, forge members' health and priority metadata, or block a bootstrap.
//
// # Wire
//
// One TCP listener (the gossip port, TCP only) serves everything. A connection starts with a TLS 1.3
// handshake in which both sides present certificates, verified by the tls.Configs given (pki.Reloader's:
// the peer's chain against the current CA, ServerAuth and ClientAuth, a valid node name) and with ALPN
// "vipd-gossip/1", so a Raft connection using the same certificates is never taken for gossip. Then the
// dialler sends one mode byte, 'p' (packets) or 's' (a stream), and the acceptor answers one byte, so a dial
// returns only once the peer has accepted this node's certificate (TLS 1.3 would otherwise report a refusal
// only at the first read). Nothing of memberlist's is read from, or written to, a connection before that.
//
// # Packets (WriteTo, WriteToAddress, PacketCh)
//
// memberlist treats packets as lossy datagrams, so they must never block it. Each destination (address and,
// if memberlist names it, node) has a queue of 64 packets and one writer goroutine that owns a persistent
// packet connection, dialled on demand within Config.Timeout. WriteToAddress copies the packet into the
// queue and returns at once; a packet is dropped (counted, not an error) when the queue is full, while the
// destination is unreachable (after a failed dial, for a back-off of 50 ms doubling to 2 s, cleared as soon
// as that IP connects to us), or when Allow refuses the address. A dead peer thus looks like lost UDP: its
// probes time out. Packets are framed by a 4-byte big-endian length; a frame is 1 byte to 64 KiB
// (MaxPacketSize), a larger one is refused on sending and closes the connection on receipt. The writer
// coalesces queued frames into one TLS write. Each direction between two nodes uses the connection its
// sender dialled; an accepted packet connection is only read. Packets received go to PacketCh with the
// peer's TCP address (its IP, as dials use the bind address as source, and an ephemeral port: memberlist
// answers to the address carried in its messages, not to this one) and the time the frame header was read.
// A destination unused for a minute is closed; an accepted packet connection silent for two minutes too.
// A packet connection lives at most Config.MaxConnAge (10 minutes): the acceptor closes it then (the
// dialler replaces it a little earlier), so a certificate or CA rotation that cuts a node off applies to
// established connections too, within that time; new connections see it at once.
//
// # Streams (DialTimeout, DialAddressTimeout, StreamCh)
//
// Each stream is its own TLS connection, as memberlist's NetTransport opens a TCP connection per stream. The
// returned and the accepted net.Conns are *tls.Conn underneath and expose ConnectionState().
//
// # Identity
//
// When memberlist names the node it addresses (Address.Name, as probes and push-pulls do), the peer's
// certificate must name that node (pki.PeerNames), otherwise the dial fails with ErrWrongPeer and the
// packets are dropped: an authenticated node cannot answer for another one's address. Packets and streams
// accepted are not bound to a name (memberlist gives the transport no way to pass one); every peer is at
// least a holder of a valid node certificate of the cluster's CA.
//
// # Strangers
//
// Each accepted connection is handshaked in its own goroutine under a deadline (Config.HandshakeTimeout,
// default 5 s), at most 8 at a time per source IP (more are closed at once) and 64 in all: beyond that the
// oldest pending handshake is closed to make room. A peer's handshake takes milliseconds, so a slow or silent
// stranger, from one address or many, can neither stall accepts nor crowd out peers (unless it opens 64
// connections within one peer's handshake). Every refusal (failed or timed-out handshake, wrong
// protocol, too many handshakes) is logged at warn level at most once per peer IP per minute, with the
// address and the number of refusals suppressed since; failed outgoing handshakes likewise.
//
// # Lifetime
//
// New listens and starts the accept loop; Shutdown (memberlist calls it) closes the listener and every
// connection (including streams handed to memberlist, and dials and handshakes in progress), stops every
// writer and waits for every goroutine the Transport started.
package tlsgossip
