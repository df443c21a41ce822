package cluster

import (
	"io"

	"github.com/hashicorp/raft"
)

// fsm is the trivial state machine: the cluster replicates nothing of its own yet; raft is used for leader
// election, and Barrier still proves that the leader's term is committed.
type fsm struct{}

var _ raft.FSM = fsm{}

func (fsm) Apply(*raft.Log) any                 { return nil }
func (fsm) Snapshot() (raft.FSMSnapshot, error) { return emptySnapshot{}, nil }
func (fsm) Restore(rc io.ReadCloser) error      { _, err := io.Copy(io.Discard, rc); rc.Close(); return err }

type emptySnapshot struct{}

func (emptySnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (emptySnapshot) Release()                             {}
