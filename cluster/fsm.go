package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Raft log commands. The cluster replicates one fact of its own: the cluster ID (see identity.go).
const cmdSetClusterID byte = 1

// fsm is the cluster's state machine. Raft is used for leader election, and Barrier proves that the leader's
// term is committed; the only replicated state is the cluster ID, which the first set command fixes for good
// (later ones are no-ops), so every replica that applies the same log agrees on it.
type fsm struct {
	onID func(id string) // called when the ID becomes known (apply or restore); may be nil

	mu sync.Mutex
	id string
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(onID func(string)) *fsm { return &fsm{onID: onID} }

func (f *fsm) clusterID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.id
}

// set records id if no ID is known yet and returns the ID in force.
func (f *fsm) set(id string) string {
	f.mu.Lock()
	first := f.id == "" && id != ""
	if first {
		f.id = id
	}
	cur := f.id
	f.mu.Unlock()
	if first && f.onID != nil {
		f.onID(cur)
	}
	return cur
}

// Apply returns the cluster ID in force after the entry.
func (f *fsm) Apply(l *raft.Log) any {
	if len(l.Data) > 0 && l.Data[0] == cmdSetClusterID {
		return f.set(string(l.Data[1:]))
	}
	return f.clusterID() // unknown command from a newer version: ignored
}

// fsmState is the snapshot format. Snapshots written before the cluster ID existed are empty.
type fsmState struct {
	ClusterID string `json:"cluster_id,omitempty"`
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return fsmSnapshot{fsmState{ClusterID: f.clusterID()}}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read raft snapshot: %w", err)
	}
	if len(b) == 0 {
		return nil
	}
	var st fsmState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decode raft snapshot: %w", err)
	}
	f.mu.Lock()
	f.id = "" // a restore replaces the state
	f.mu.Unlock()
	f.set(st.ClusterID)
	return nil
}

type fsmSnapshot struct{ st fsmState }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := json.Marshal(s.st)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("write raft snapshot: %w", err)
	}
	return sink.Close()
}

func (fsmSnapshot) Release() {}
