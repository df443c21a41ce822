package viptest

import (
	"context"
	"sync"

	"github.com/vipd/vipd/vip"
)

var _ vip.Leadership = (*FakeLeadership)(nil)

// FakeLeadership is a scripted vip.Leadership for unit tests of vip.Manager. Leadership is set with
// SetLeader; a successful TransferLeadership makes the node a follower, as Raft would. Errors for
// Barrier, VerifyLeader and TransferLeadership are injected with the Set*Error methods. Safe for
// concurrent use; one watcher at a time.
type FakeLeadership struct {
	mu          sync.Mutex
	ch          chan bool
	leader      bool
	peers       []vip.Peer
	barrierErr  error
	verifyErr   error
	transferErr error
	barriers    int
	verifies    int
	transfers   []string
	log         *EventLog
}

// NewFakeLeadership returns a follower with no peers.
func NewFakeLeadership() *FakeLeadership {
	return &FakeLeadership{ch: make(chan bool, 1)}
}

// SetEventLog records "raft:barrier", "raft:verify" and "raft:transfer NODE" in log.
func (f *FakeLeadership) SetEventLog(log *EventLog) {
	f.mu.Lock()
	f.log = log
	f.mu.Unlock()
}

// SetLeader publishes a leadership value, replacing any value the watcher has not read yet.
func (f *FakeLeadership) SetLeader(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLocked(v)
}

func (f *FakeLeadership) setLocked(v bool) {
	f.leader = v
	select {
	case <-f.ch:
	default:
	}
	f.ch <- v
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

// WatchLeadership returns the leadership channel; the stop function is a no-op.
func (f *FakeLeadership) WatchLeadership() (<-chan bool, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ch, func() {}
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

// VerifyLeader succeeds while leader unless an error was injected.
func (f *FakeLeadership) VerifyLeader(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.verifies++
	f.log.Add("raft:verify")
	if f.verifyErr != nil {
		return f.verifyErr
	}
	if !f.leader {
		return ErrNotLeader
	}
	return ctx.Err()
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
