package vip

import "testing"

func TestHandoffRanking(t *testing.T) {
	full := func(name string, score, prio int) Peer {
		return Peer{Name: name, Healthy: true, Score: score, Priority: prio, Voter: true}
	}
	part := func(name string, score, prio int) Peer {
		return Peer{Name: name, Score: score, Priority: prio, Voter: true}
	}
	tests := []struct {
		name  string
		own   NodeHealth
		peers []Peer
		want  string // "" = keep the VIP
	}{
		{"one of two down, peer fully healthy", NodeHealth{Score: 1}, []Peer{full("b", 2, 0)}, "b"},
		{"one of two down, peer also one down", NodeHealth{Score: 1}, []Peer{part("b", 1, 9)}, ""},
		{"none up, peer one up", NodeHealth{Score: 0}, []Peer{part("b", 1, 0)}, "b"},
		{"none up, peer none up", NodeHealth{Score: 0}, []Peer{part("b", 0, 9)}, ""},
		{"fully healthy beats more frontends", NodeHealth{Score: 0},
			[]Peer{part("a", 2, 0), full("z", 1, 0)}, "z"},
		{"more frontends beats priority", NodeHealth{Score: 0},
			[]Peer{part("a", 1, 9), part("b", 2, 0)}, "b"},
		{"priority, then name", NodeHealth{Score: 1},
			[]Peer{full("c", 2, 1), full("b", 2, 5), full("a", 2, 5)}, "a"},
		{"witness, non-voter and nameless never chosen", NodeHealth{Score: 0}, []Peer{
			{Name: "w", Healthy: true, Score: 2, Voter: true, Witness: true},
			{Name: "n", Healthy: true, Score: 2},
			{Healthy: true, Score: 2, Voter: true},
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := healthierTarget(tc.peers, tc.own)
			if ok != (tc.want != "") || got.Name != tc.want {
				t.Fatalf("healthierTarget = %q, %v; want %q", got.Name, ok, tc.want)
			}
		})
	}
}

func TestPreemptAndSuccessor(t *testing.T) {
	peers := []Peer{
		{Name: "hi-part", Score: 1, Priority: 50, Voter: true},
		{Name: "mid", Healthy: true, Score: 2, Priority: 20, Voter: true},
		{Name: "low", Healthy: true, Score: 2, Priority: 1, Voter: true},
	}
	if got, ok := preemptTarget(peers, 10); !ok || got.Name != "mid" {
		t.Fatalf("preemptTarget(above 10) = %q, %v; want mid (only fully healthy peers preempt)", got.Name, ok)
	}
	if got, ok := preemptTarget(peers, 20); ok {
		t.Fatalf("preemptTarget(above 20) = %q; want none (priority must be strictly higher)", got.Name)
	}
	if got, ok := Successor(peers); !ok || got.Name != "mid" {
		t.Fatalf("Successor = %q, %v; want mid", got.Name, ok)
	}
	if got, ok := Successor(peers[:1]); !ok || got.Name != "hi-part" {
		t.Fatalf("Successor of a partly healthy peer = %q, %v; want it: it serves more than Raft's pick might", got.Name, ok)
	}
	if got, ok := Successor([]Peer{{Name: "down", Voter: true}}); ok {
		t.Fatalf("Successor = %q; want none when no peer serves anything", got.Name)
	}
}
