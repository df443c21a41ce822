package vip

import "sort"

// chooseTarget picks the peer to hand leadership to: a healthy voter that is not a witness and, when
// above is non-nil, has a priority strictly higher than *above. Highest priority wins, then the lowest
// name, so every node would make the same choice from the same gossip.
func chooseTarget(peers []Peer, above *int) (Peer, bool) {
	var cands []Peer
	for _, p := range peers {
		if !p.Healthy || !p.Voter || p.Witness || p.Name == "" {
			continue
		}
		if above != nil && p.Priority <= *above {
			continue
		}
		cands = append(cands, p)
	}
	if len(cands) == 0 {
		return Peer{}, false
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].Priority != cands[j].Priority {
			return cands[i].Priority > cands[j].Priority
		}
		return cands[i].Name < cands[j].Name
	})
	return cands[0], true
}

// Successor picks the peer that should lead next when this node steps aside: a healthy voter that is not a
// witness, highest priority first, then by name so every node would pick the same one.
func Successor(peers []Peer) (Peer, bool) { return chooseTarget(peers, nil) }
