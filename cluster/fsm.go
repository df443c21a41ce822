package cluster

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// Raft log commands. The cluster replicates facts of its own: the cluster ID (identity.go), the keyring
// (keyring.go) and each node's latest hand-over drain (drain.go).
const (
	cmdSetClusterID byte = 1
	cmdKeyring      byte = 2
	cmdDrain        byte = 3
)

// Limits on replicated data, so a malformed entry or snapshot is refused before it costs memory.
const (
	maxClusterID    = 64
	maxSnapshotSize = 64 << 10
)

// errBadCommand is wrapped by the errors Apply returns for entries it refuses.
var errBadCommand = errors.New("malformed raft command")

// fsm is the cluster's state machine. Raft is used for leader election, and Barrier proves that the leader's
// term is committed; the replicated state is the cluster ID, which the first set command fixes for good
// (later ones are no-ops), and the latest keyring. Apply and Restore refuse malformed input with an error
// and leave the state unchanged; they never panic.
type fsm struct {
	onID      func(id string)       // called when the ID becomes known (apply or restore); may be nil
	onKeyring func(st keyringState) // called with each applied or restored keyring; may be nil

	mu        sync.Mutex
	id        string
	keyring   *keyringState          // nil until the first keyring entry
	drainRecs map[string]drainRecord // each node's latest drain, by node
}

var _ raft.FSM = (*fsm)(nil)

func newFSM(onID func(string), onKeyring func(keyringState)) *fsm {
	return &fsm{onID: onID, onKeyring: onKeyring}
}

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

// Apply returns the cluster ID in force after a cluster ID entry, nil after a keyring entry, and an error
// for an entry it refuses (malformed, or from a newer version).
func (f *fsm) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		return fmt.Errorf("%w: empty entry at index %d", errBadCommand, l.Index)
	}
	switch l.Data[0] {
	case cmdSetClusterID:
		id := string(l.Data[1:])
		if err := checkClusterID(id); err != nil {
			return fmt.Errorf("%w at index %d: %w", errBadCommand, l.Index, err)
		}
		return f.set(id)
	case cmdKeyring:
		st, err := decodeKeyringCmd(l.Data[1:])
		if err != nil {
			return fmt.Errorf("%w at index %d: %w", errBadCommand, l.Index, err)
		}
		st.Index = l.Index
		f.setKeyring(st)
		return nil
	case cmdDrain:
		r, err := decodeDrainCmd(l.Data[1:])
		if err == nil {
			r.Epoch = l.Index
			err = f.setDrain(r)
		}
		if err != nil {
			return fmt.Errorf("%w at index %d: %w", errBadCommand, l.Index, err)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown command %d at index %d (written by a newer vipd?)", errBadCommand, l.Data[0], l.Index)
}

func (f *fsm) setKeyring(st keyringState) {
	f.mu.Lock()
	c := st.clone()
	f.keyring = &c
	f.mu.Unlock()
	if f.onKeyring != nil {
		f.onKeyring(st)
	}
}

func checkClusterID(id string) error {
	if id == "" || len(id) > maxClusterID {
		return fmt.Errorf("cluster ID of %d bytes, want 1-%d", len(id), maxClusterID)
	}
	if _, err := hex.DecodeString(id); err != nil {
		return fmt.Errorf("cluster ID %q is not hex", id)
	}
	return nil
}

func encodeKeyringCmd(st keyringState) ([]byte, error) {
	st.Index = 0 // the entry's own index is the keyring's
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("encode keyring: %w", err)
	}
	return append([]byte{cmdKeyring}, b...), nil
}

func decodeKeyringCmd(b []byte) (keyringState, error) {
	var st keyringState
	if err := decodeStrict(b, &st); err != nil {
		return keyringState{}, fmt.Errorf("decode keyring: %w", err)
	}
	if err := st.validate(); err != nil {
		return keyringState{}, err
	}
	return st, nil
}

// decodeStrict decodes one JSON value into v, refusing unknown fields and trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// fsmState is the snapshot format. Snapshots written before the cluster ID existed are empty; those written
// before the keyring existed have none.
type fsmState struct {
	ClusterID string        `json:"cluster_id,omitempty"`
	Keyring   *keyringState `json:"keyring,omitempty"`
	Drains    []snapDrain   `json:"drains,omitempty"`
}

// snapDrain is a drain record in a snapshot, with its epoch (in the log, the entry's index is the epoch).
type snapDrain struct {
	drainRecord
	Epoch uint64 `json:"epoch"`
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := fsmState{ClusterID: f.id}
	if f.keyring != nil {
		k := f.keyring.clone()
		st.Keyring = &k
	}
	for _, r := range f.drainRecs {
		st.Drains = append(st.Drains, snapDrain{drainRecord: r, Epoch: r.Epoch})
	}
	return fsmSnapshot{st}, nil
}

// Restore replaces the state with a snapshot's; a malformed snapshot is refused and changes nothing.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("read raft snapshot: %w", err)
	}
	st, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.id = "" // a restore replaces the state
	f.keyring = nil
	f.drainRecs = nil
	f.mu.Unlock()
	for _, d := range st.Drains {
		r := d.drainRecord
		r.Epoch = d.Epoch
		if err := f.setDrain(r); err != nil {
			return fmt.Errorf("raft snapshot: %w", err)
		}
	}
	if st.ClusterID != "" {
		f.set(st.ClusterID)
	}
	if st.Keyring != nil {
		f.setKeyring(*st.Keyring)
	}
	return nil
}

func decodeSnapshot(b []byte) (fsmState, error) {
	var st fsmState
	if len(b) > maxSnapshotSize {
		return st, fmt.Errorf("raft snapshot larger than %d bytes", maxSnapshotSize)
	}
	if len(b) == 0 {
		return st, nil
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fsmState{}, fmt.Errorf("decode raft snapshot: %w", err)
	}
	if st.ClusterID != "" {
		if err := checkClusterID(st.ClusterID); err != nil {
			return fsmState{}, fmt.Errorf("raft snapshot: %w", err)
		}
	}
	if st.Keyring != nil {
		if err := st.Keyring.validate(); err != nil {
			return fsmState{}, fmt.Errorf("raft snapshot: %w", err)
		}
	}
	if len(st.Drains) > maxDrainRecords {
		return fsmState{}, fmt.Errorf("raft snapshot: %d drain records, at most %d", len(st.Drains), maxDrainRecords)
	}
	for _, d := range st.Drains {
		if err := d.validate(); err != nil {
			return fsmState{}, fmt.Errorf("raft snapshot: %w", err)
		}
	}
	return st, nil
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
