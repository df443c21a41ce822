package cluster

import (
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Proof of leadership for the VIP's answer fence.
//
// raft.VerifyLeader succeeds once a quorum has answered heartbeats with success, but it counts any answer
// that arrives after the verification was registered, including one to a heartbeat sent long before: raft's
// heartbeat loop calls notifyAll on every response it reads. A leader that was paused (docker pause, a long
// stall) finds, on resuming, the answers to the heartbeats it sent just before the pause waiting in its
// sockets; a VerifyLeader started after the resume succeeds on them although the followers have elected
// someone else meanwhile. So "VerifyLeader started at t and succeeded" does not show that a quorum heard from
// this leader after t — the compose suite caught a resumed leader answering ARP beside the new one.
//
// What does hold: a follower that acknowledged an AppendEntries of the current term had heard from this
// leader no earlier than the moment that request was sent, and raft's follower starts no election before
// HeartbeatTimeout after its last contact. So the transport records, per peer, when it sent the latest
// AppendEntries that peer acknowledged in a term, and VerifyLeader reports the quorum's send time: the
// latest t such that a quorum (this node included) heard from this leader at or after t.

// ackLog records acknowledged AppendEntries per peer. Safe for concurrent use.
type ackLog struct {
	mu   sync.Mutex
	acks map[raft.ServerID]ack
}

type ack struct {
	term uint64
	sent time.Time
}

func newAckLog() *ackLog { return &ackLog{acks: map[raft.ServerID]ack{}} }

// record notes that id acknowledged (Success) an AppendEntries of term sent at sent.
func (l *ackLog) record(id raft.ServerID, term uint64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.acks[id]; ok && cur.term == term && !sent.After(cur.sent) {
		return // an older request answered late: the newer proof stands
	}
	l.acks[id] = ack{term: term, sent: sent}
}

// quorumSince returns the latest time t such that a quorum of voters — self, which needs no message, and the
// others by their acknowledgements in term — heard from this leader at or after t, and whether there is one.
func (l *ackLog) quorumSince(self raft.ServerID, voters []raft.ServerID, term uint64, now time.Time) (time.Time, bool) {
	need := len(voters)/2 + 1
	var times []time.Time
	l.mu.Lock()
	for _, v := range voters {
		if v == self {
			times = append(times, now)
			continue
		}
		if a, ok := l.acks[v]; ok && a.term == term {
			times = append(times, a.sent)
		}
	}
	l.mu.Unlock()
	if len(times) < need {
		return time.Time{}, false
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) }) // newest first
	return times[need-1], true
}
