package viptest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vipd/vipd/internal/notify"
	"github.com/vipd/vipd/vip"
)

// ErrNotLeader is returned by FakeLeadership's Barrier and VerifyLeader on a follower.
var ErrNotLeader = errors.New("viptest: not the leader")

var _ vip.Leadership = (*FakeLeadership)(nil)

// FakeLeadership is a scripted vip.Leadership for unit tests of vip.Manager. Leadership is set with
// SetLeader (each election is a new term) or Reelect; a successful TransferLeadership makes the node a
// follower, as Raft would. Errors for Barrier, VerifyLeader and TransferLeadership are injected with the
// Set*Error methods, a slow quorum with HangVerify. Like the cluster, the watch channel holds only the newest
// state: a state the watcher has not read yet is replaced. Safe for concurrent use, with any number of
// watchers.
type FakeLeadership struct {
	mu          sync.Mutex
	states      *notify.Broadcaster[vip.LeaderState]
	leader      bool
	term        uint64
	peers       []vip.Peer
	barrierErr  error
	verifyErr   error
	transferErr error
	verifyHang  chan struct{} // non-nil: VerifyLeader waits until it is closed or its ctx is done
	verifyAge   time.Duration // how much older than the call VerifyLeader's proof is
	barriers    int
	verifies    int
	transfers   []string
	log         *EventLog

	drainEpoch    uint64
	startedDrains []vip.Drain
	activeDrains  []vip.Drain
	onStartDrain  func() // called by StartDrain before it records, without f.mu held
}

// NewFakeLeadership returns a follower in term 0 with no peers.
func NewFakeLeadership() *FakeLeadership {
	return &FakeLeadership{states: notify.NewLatest(vip.LeaderState{})}
}

// SetEventLog records "raft:barrier", "raft:verify" and "raft:transfer NODE" in log.
func (f *FakeLeadership) SetEventLog(log *EventLog) {
	f.mu.Lock()
	f.log = log
	f.mu.Unlock()
}

// SetLeader publishes a leadership value. Becoming leader starts a new term; true while already leader
// republishes the current term (a duplicate observation).
func (f *FakeLeadership) SetLeader(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v && !f.leader {
		f.term++
	}
	f.setLocked(v)
}

// Reelect makes the node lose leadership and win it back in a new term, publishing only the final state: a
// watcher that had not read in between sees leadership in the new term and never the loss, as happens when
// the cluster's latest-value channel coalesces true, false, true.
func (f *FakeLeadership) Reelect() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.term++
	f.setLocked(true)
}

// Term returns the current term.
func (f *FakeLeadership) Term() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.term
}

func (f *FakeLeadership) setLocked(v bool) {
	f.leader = v
	f.states.Publish(vip.LeaderState{Leader: v, Term: f.term})
}

// SetPeers replaces the peers returned by Peers.
func (f *FakeLeadership) SetPeers(peers ...vip.Peer) {
	f.mu.Lock()
	f.peers = append([]vip.Peer(nil), peers...)
	f.mu.Unlock()
}

// SetBarrierError makes Barrier fail with err (nil: succeed while leader).
func (f *FakeLeadership) SetBarrierError(err error) {
	f.mu.Lock()
	f.barrierErr = err
	f.mu.Unlock()
}

// SetVerifyError makes VerifyLeader fail with err (nil: succeed while leader).
func (f *FakeLeadership) SetVerifyError(err error) {
	f.mu.Lock()
	f.verifyErr = err
	f.mu.Unlock()
}

// SetTransferError makes TransferLeadership fail with err (nil: succeed).
func (f *FakeLeadership) SetTransferError(err error) {
	f.mu.Lock()
	f.transferErr = err
	f.mu.Unlock()
}

// HangVerify makes VerifyLeader block until its ctx is done, as with a quorum that does not answer (true),
// or lets it answer again, releasing the calls that are waiting (false).
func (f *FakeLeadership) HangVerify(hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case hang && f.verifyHang == nil:
		f.verifyHang = make(chan struct{})
	case !hang && f.verifyHang != nil:
		close(f.verifyHang)
		f.verifyHang = nil
	}
}

// WatchLeadership returns a channel holding the newest leadership state, starting with the current one.
func (f *FakeLeadership) WatchLeadership() (<-chan vip.LeaderState, func()) {
	return f.states.Subscribe()
}

// Barrier succeeds while leader unless an error was injected.
func (f *FakeLeadership) Barrier(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.barriers++
	f.log.Add("raft:barrier")
	if f.barrierErr != nil {
		return f.barrierErr
	}
	if !f.leader {
		return ErrNotLeader
	}
	return ctx.Err()
}

// VerifyLeader succeeds while leader unless an error was injected, with a proof as old as SetVerifyAge
// says (the time of the call by default); while HangVerify is on it waits, and returns an error wrapping
// ctx.Err() once ctx is done.
func (f *FakeLeadership) VerifyLeader(ctx context.Context) (time.Time, error) {
	start := time.Now()
	f.mu.Lock()
	f.verifies++
	f.log.Add("raft:verify")
	hang := f.verifyHang
	f.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("viptest: verify leader: %w", ctx.Err())
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.verifyErr != nil {
		return time.Time{}, f.verifyErr
	}
	if !f.leader {
		return time.Time{}, ErrNotLeader
	}
	return start.Add(-f.verifyAge), ctx.Err()
}

// SetVerifyAge makes VerifyLeader report that the quorum heard from this node age before the call, as a
// cluster does whose heartbeat acknowledgements are stale (a leader that was paused).
func (f *FakeLeadership) SetVerifyAge(age time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifyAge = age
}

// TransferLeadership records the target and, on success, makes this node a follower.
func (f *FakeLeadership) TransferLeadership(_ context.Context, toNode string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfers = append(f.transfers, toNode)
	f.log.Add("raft:transfer " + toNode)
	if f.transferErr != nil {
		return f.transferErr
	}
	f.setLocked(false)
	return nil
}

// Peers returns the peers set with SetPeers.
func (f *FakeLeadership) Peers() []vip.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]vip.Peer(nil), f.peers...)
}

// Barriers returns how many barriers were requested.
func (f *FakeLeadership) Barriers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.barriers
}

// Verifies returns how many leader verifications were requested.
func (f *FakeLeadership) Verifies() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.verifies
}

// Transfers returns the targets of every TransferLeadership call so far ("" = any).
func (f *FakeLeadership) Transfers() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.transfers...)
}
