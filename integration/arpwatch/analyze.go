package arpwatch

import (
	"sort"
	"time"
)

// Report is what the ARP observer saw in a time window.
type Report struct {
	Requests int
	// Answers counts the ARP packets claiming the target, per MAC.
	Answers map[string]int
	// TwoMACWindows counts request windows (from one request to the next)
	// in which replies to that request came from two or more MACs, and
	// TwoMACTime is their total length. Announcements are left out here:
	// a new holder's burst may share a window with the old holder's last
	// reply even when the handover was clean.
	TwoMACWindows int
	TwoMACTime    time.Duration
	// Overlap is the time during which two or more MACs were each in an
	// unbroken run of answers (replies or announcements, no gap longer
	// than the run gap): the time two nodes held the VIP at once. A clean
	// handover gives zero, since the old holder's last answer comes
	// before the new one's first.
	Overlap time.Duration
	// Silent is the longest time in the window without any answer.
	Silent time.Duration
}

// Analyze builds a Report from raw answers and request times, considering
// only [from, to]. Answers of one MAC less than runGap apart belong to the
// same run.
func Analyze(answers []Answer, requests []time.Time, from, to time.Time, runGap time.Duration) Report {
	r := Report{Answers: map[string]int{}}
	var in []Answer
	for _, a := range answers {
		if !a.At.Before(from) && !a.At.After(to) {
			in = append(in, a)
			r.Answers[a.MAC]++
		}
	}
	sort.SliceStable(in, func(i, j int) bool { return in[i].At.Before(in[j].At) })
	var reqs []time.Time
	for _, q := range requests {
		if !q.Before(from) && !q.After(to) {
			reqs = append(reqs, q)
		}
	}
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].Before(reqs[j]) })
	r.Requests = len(reqs)

	// Windows between consecutive requests.
	for i, q := range reqs {
		end := to
		if i+1 < len(reqs) {
			end = reqs[i+1]
		}
		macs := map[string]bool{}
		for _, a := range in {
			if !a.Gratuitous && !a.At.Before(q) && a.At.Before(end) {
				macs[a.MAC] = true
			}
		}
		if len(macs) >= 2 {
			r.TwoMACWindows++
			r.TwoMACTime += end.Sub(q)
		}
	}

	// Runs per MAC, then the time covered by two or more runs.
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	byMAC := map[string][]time.Time{}
	for _, a := range in {
		byMAC[a.MAC] = append(byMAC[a.MAC], a.At)
	}
	for _, ts := range byMAC {
		start := ts[0]
		for i := 1; i <= len(ts); i++ {
			if i == len(ts) || ts[i].Sub(ts[i-1]) > runGap {
				edges = append(edges, edge{start, +1}, edge{ts[i-1], -1})
				if i < len(ts) {
					start = ts[i]
				}
			}
		}
	}
	sort.SliceStable(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].delta < edges[j].delta // close before open: touching runs do not overlap
		}
		return edges[i].at.Before(edges[j].at)
	})
	open := 0
	var since time.Time
	for _, e := range edges {
		if open >= 2 {
			r.Overlap += e.at.Sub(since)
		}
		open += e.delta
		since = e.at
	}

	last := from
	for _, a := range in {
		if gap := a.At.Sub(last); gap > r.Silent {
			r.Silent = gap
		}
		last = a.At
	}
	if gap := to.Sub(last); gap > r.Silent {
		r.Silent = gap
	}
	return r
}
