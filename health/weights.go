package health

// weightedSequence returns the order in which round robin should visit backends with the given weights: the
// smooth weighted round robin of nginx (ngx_http_upstream_get_peer). Each step adds every backend's weight to
// its running score, picks the highest score (the first on a tie) and subtracts the total weight from it. So
// weights 3:1 give a,a,b,a rather than a,a,a,b: a heavier backend's turns are spread over the cycle, and a
// burst of new connections does not land on one backend.
//
// Weights are divided by their greatest common divisor first (2:2 is 1:1), so the sequence is as short as
// the ratios allow; equal weights give each backend once, in order. It returns indexes into weights; every
// weight must be >= 1.
func weightedSequence(weights []int) []int {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	if g == 0 {
		return nil
	}
	total := 0
	for _, w := range weights {
		total += w / g
	}
	seq := make([]int, 0, total)
	score := make([]int, len(weights))
	for range total {
		best := -1
		for i, w := range weights {
			score[i] += w / g
			if best < 0 || score[i] > score[best] {
				best = i
			}
		}
		score[best] -= total
		seq = append(seq, best)
	}
	return seq
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
