package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestQuorumSince: the proof is the send time of the acknowledged heartbeats that make the quorum, of the
// current term only; a late answer to an old heartbeat (what a resumed leader reads first) proves nothing new.
func TestQuorumSince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	voters := []raft.ServerID{"a", "b", "c"}
	l := newAckLog()
	if _, ok := l.quorumSince("a", voters, 5, t0); ok {
		t.Fatal("a proof without any acknowledgement")
	}
	l.record("b", 5, t0.Add(10*time.Millisecond))
	since, ok := l.quorumSince("a", voters, 5, t0.Add(50*time.Millisecond))
	if !ok || !since.Equal(t0.Add(10*time.Millisecond)) {
		t.Fatalf("self + b: %v %v, want b's send time", since, ok)
	}
	l.record("c", 5, t0.Add(30*time.Millisecond))
	if since, _ := l.quorumSince("a", voters, 5, t0.Add(50*time.Millisecond)); !since.Equal(t0.Add(30 * time.Millisecond)) {
		t.Errorf("self + b + c: %v, want the newer of the two, c's", since)
	}
	// b answers late a heartbeat sent before the one already recorded: the newer proof stands.
	l.record("b", 5, t0.Add(5*time.Millisecond))
	if since, _ := l.quorumSince("a", voters, 5, t0.Add(50*time.Millisecond)); !since.Equal(t0.Add(30 * time.Millisecond)) {
		t.Errorf("after a late answer: %v, want c's %v still", since, t0.Add(30*time.Millisecond))
	}
	// In a new term, the old acknowledgements prove nothing.
	if _, ok := l.quorumSince("a", voters, 6, t0.Add(50*time.Millisecond)); ok {
		t.Error("acknowledgements of term 5 proved leadership in term 6")
	}
	// Five voters need two others.
	five := []raft.ServerID{"a", "b", "c", "d", "e"}
	l.record("d", 5, t0.Add(40*time.Millisecond))
	if since, _ := l.quorumSince("a", five, 5, t0.Add(50*time.Millisecond)); !since.Equal(t0.Add(30 * time.Millisecond)) {
		t.Errorf("five voters: %v, want the second newest, %v", since, t0.Add(30*time.Millisecond))
	}
	// A single voter proves itself.
	if since, ok := l.quorumSince("a", []raft.ServerID{"a"}, 9, t0); !ok || !since.Equal(t0) {
		t.Errorf("one voter: %v %v", since, ok)
	}
}
