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
// [Manager] owns the VIP. One goroutine watches Raft leadership; on becoming leader it first commits a
// barrier (proof that it leads the current term), checks local health, then adds the address, starts
// answering and announces (a burst, then a periodic refresh that is also a level check: an address
// someone removed is put back). It releases — stop answering, remove the address — before anything
// else the moment it may no longer lead: leadership lost, a failed VerifyLeader, a transfer, shutdown.
//
// Health gating: an unhealthy leader hands leadership to a healthy peer (highest Priority first). If no
// peer is healthy the leader keeps the VIP on purpose: an address that points at an unhealthy proxy
// recovers the instant a backend returns, whereas no address cannot recover until an election.
//
// Witness nodes vote but never hold the VIP: they transfer leadership away as soon as they win it.
package vip
