package proxy

import "sync/atomic"

// loads reports a backend's active connection count for LeastConn. Implementations must be safe for
// concurrent use; the backend table is the production one.
type loads interface {
	active(addr string) int64
}

// balancer picks one backend index per dial attempt. It is safe for concurrent use. The mode is passed per
// pick, so SetConfig switches it for the next connection without touching the cursor.
type balancer struct {
	next atomic.Uint64 // round-robin cursor, also the LeastConn tie-breaker
}

// pick returns the index in addrs of the backend to try next, skipping the backends already tried for this
// connection, or -1 when every backend was tried. addrs must be non-empty for a result other than -1.
//
// addrs may list a backend several times: health.Monitor's Healthy is a weighted sequence (a backend of
// weight 3 appears three times, spread out). RoundRobin walks it with the cursor, so each backend gets its
// weighted share; LeastConn sees a backend's entries at the same load, so weight breaks ties in proportion.
// A retry skips every entry of a backend already tried, by address.
//
// RoundRobin takes the cursor's backend on a first attempt and walks
// on from the last backend tried on a retry (without moving the cursor); LeastConn takes the least loaded
// untried backend, rotating among ties. Either way a dead backend costs a connection at most one attempt.
func (b *balancer) pick(mode Balance, addrs []string, tried []int, l loads) int {
	n := len(addrs)
	if n == 0 || len(tried) >= n {
		return -1
	}
	if mode == LeastConn {
		return leastLoaded(addrs, tried, l, b.next.Add(1)-1)
	}
	var start int
	if len(tried) == 0 {
		start = int((b.next.Add(1) - 1) % uint64(n))
	} else {
		start = (tried[len(tried)-1] + 1) % n
	}
	for k := range n {
		if i := (start + k) % n; !wasTried(addrs, tried, i) {
			return i
		}
	}
	return -1
}

// leastLoaded returns the untried index with the fewest active connections; among equals it takes the
// (cursor mod ties)-th, so ties rotate evenly.
func leastLoaded(addrs []string, tried []int, l loads, cursor uint64) int {
	var buf [64]int64
	load := buf[:0]
	if len(addrs) > len(buf) {
		load = make([]int64, 0, len(addrs))
	}
	best, ties := int64(-1), uint64(0)
	for i, a := range addrs {
		v := int64(-1)
		if !wasTried(addrs, tried, i) {
			v = l.active(a)
			switch {
			case best < 0 || v < best:
				best, ties = v, 1
			case v == best:
				ties++
			}
		}
		load = append(load, v)
	}
	if ties == 0 {
		return -1
	}
	k := cursor % ties
	for i, v := range load {
		if v == best {
			if k == 0 {
				return i
			}
			k--
		}
	}
	return -1
}

// wasTried reports whether the backend at addrs[i] was tried already: its index, or another entry of the same
// address (a weighted sequence repeats addresses). Strings of one snapshot share their bytes, so the
// comparison of a repeated address is a pointer and length check.
func wasTried(addrs []string, tried []int, i int) bool {
	for _, t := range tried {
		if t == i || addrs[t] == addrs[i] {
			return true
		}
	}
	return false
}
