package vip

import "sort"

// Ranking: when this node must step aside, leadership goes to the best peer by these keys in order, so every
// node would make the same choice from the same gossip:
//
//  1. fully healthy before partly healthy (Healthy),
//  2. more healthy frontends (Score),
//  3. higher priority,
//  4. lower name.
//
// An unhealthy holder hands the VIP only to a peer that is healthier than itself (healthierThan): a fully
// healthy one, or one with strictly more healthy frontends. A holder with one of two frontends down therefore
// moves the VIP to a peer with both up, but keeps it rather than hand it to a peer that also has one down (the
// move would cost every open connection and serve no better), and a holder with none up moves it to a peer
// with one up.

// eligibleVoter is a peer that can lead and hold the VIP at all.
func eligibleVoter(p Peer) bool { return p.Voter && !p.Witness && p.Name != "" }

// healthierThan reports whether peer p would serve better than this node in state own.
func healthierThan(p Peer, own NodeHealth) bool {
	if p.Healthy != own.Healthy {
		return p.Healthy
	}
	return p.Score > own.Score
}

// betterPeer orders peers best first by the ranking above.
func betterPeer(a, b Peer) bool {
	switch {
	case a.Healthy != b.Healthy:
		return a.Healthy
	case a.Score != b.Score:
		return a.Score > b.Score
	case a.Priority != b.Priority:
		return a.Priority > b.Priority
	}
	return a.Name < b.Name
}

// chooseTarget returns the best-ranked voter (never a witness) among the peers that pass keep.
func chooseTarget(peers []Peer, keep func(Peer) bool) (Peer, bool) {
	var cands []Peer
	for _, p := range peers {
		if eligibleVoter(p) && keep(p) {
			cands = append(cands, p)
		}
	}
	if len(cands) == 0 {
		return Peer{}, false
	}
	sort.Slice(cands, func(i, j int) bool { return betterPeer(cands[i], cands[j]) })
	return cands[0], true
}

// healthierTarget is the peer an unhealthy node in state own hands leadership to, if one is healthier.
func healthierTarget(peers []Peer, own NodeHealth) (Peer, bool) {
	return chooseTarget(peers, func(p Peer) bool { return healthierThan(p, own) })
}

// preemptTarget is a fully healthy peer of priority strictly above prio, the best ranked.
func preemptTarget(peers []Peer, prio int) (Peer, bool) {
	return chooseTarget(peers, func(p Peer) bool { return p.Healthy && p.Priority > prio })
}

// anyTarget is the best-ranked voter whatever its health.
func anyTarget(peers []Peer) (Peer, bool) {
	return chooseTarget(peers, func(Peer) bool { return true })
}

// Successor picks the peer that should lead next when this node leaves: the best-ranked voter that serves at
// least one frontend (fully healthy first, then the most healthy frontends, priority, name). ok is false
// when no peer serves anything; the caller then lets Raft choose.
func Successor(peers []Peer) (Peer, bool) {
	return chooseTarget(peers, func(p Peer) bool { return p.Healthy || p.Score > 0 })
}
