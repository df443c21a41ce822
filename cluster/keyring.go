package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/hashicorp/memberlist"
)

// The cluster keyring: several accepted keys, one primary (Consul's `keyring -install/-use/-remove`).
//
// Every node holds the same keyring. A change is a Raft log entry carrying the whole next keyring
// (cmdKeyring, built by the leader from its own keyring after a barrier, keyringops.go), so every node
// applies the same sequence. Applying one updates, under one lock, the keys the Raft handshake proves and
// accepts, memberlist's keyring (gossip encryption), and <data-dir>/keyring, so a restarted node starts with
// the keyring it last had, before anything listens, whatever key its configuration still names.
//
// Each keyring carries the Raft index of the entry that made it (0: the configured key, no rotation yet).
// A node adopts a replicated keyring only if its index is newer than the one it holds: after a restart raft
// restores an older snapshot and replays entries the keyring file already reflects, and those must not take
// the node back to keys the cluster has removed (it could then never catch up again).

const (
	keyringFile = "keyring"
	// maxKeys bounds the installed keys: each is proven in every handshake and gossiped as a fingerprint
	// within memberlist's 512-byte metadata.
	maxKeys = 8
)

// keyringState is a keyring as persisted, replicated and snapshotted.
type keyringState struct {
	Keys    [][]byte `json:"keys"`
	Primary []byte   `json:"primary"`
	// Index is the Raft index of the entry that produced this keyring; 0 for the configured key.
	Index uint64 `json:"index,omitempty"`
}

// validate checks a keyring from the network, the log or a file.
func (s keyringState) validate() error {
	if len(s.Keys) == 0 {
		return errors.New("keyring has no key")
	}
	if len(s.Keys) > maxKeys {
		return fmt.Errorf("keyring has %d keys, at most %d allowed", len(s.Keys), maxKeys)
	}
	fps := map[[fpLen]byte]bool{}
	for i, k := range s.Keys {
		if err := checkKeyLen(k); err != nil {
			return fmt.Errorf("keyring key %d: %w", i, err)
		}
		fp := keyFP(k)
		if fps[fp] {
			return fmt.Errorf("keyring key %d: fingerprint %s given twice", i, KeyFingerprint(k))
		}
		fps[fp] = true
	}
	if !s.has(s.Primary) {
		return errors.New("keyring's primary key is not among its keys")
	}
	return nil
}

func (s keyringState) has(key []byte) bool {
	return slices.ContainsFunc(s.Keys, func(k []byte) bool { return bytes.Equal(k, key) })
}

func (s keyringState) clone() keyringState {
	out := keyringState{Primary: bytes.Clone(s.Primary), Index: s.Index}
	for _, k := range s.Keys {
		out.Keys = append(out.Keys, bytes.Clone(k))
	}
	return out
}

// fingerprints returns the keys' fingerprints, sorted, and the primary's.
func (s keyringState) fingerprints() (keys []string, primary string) {
	for _, k := range s.Keys {
		keys = append(keys, KeyFingerprint(k))
	}
	slices.Sort(keys)
	return keys, KeyFingerprint(s.Primary)
}

// keyring is this node's keyring. Its methods are safe for concurrent use.
type keyring struct {
	path string // "" = not persisted (no data dir yet, or dev)
	log  *slog.Logger

	mu sync.RWMutex
	st keyringState
	ml *memberlist.Keyring // gossip's view of the same keys
}

// loadKeyring returns the keyring in dataDir if one was persisted, else one holding configured. It warns
// when the file does not hold the configured key (the file wins: it reflects rotations since).
func loadKeyring(dataDir string, configured []byte, log *slog.Logger) (*keyring, error) {
	k := &keyring{log: log}
	if dataDir != "" {
		k.path = filepath.Join(dataDir, keyringFile)
	}
	st, found, err := readKeyringFile(k.path)
	if err != nil {
		return nil, err
	}
	if !found {
		st = keyringState{Keys: [][]byte{bytes.Clone(configured)}, Primary: bytes.Clone(configured)}
	} else if !st.has(configured) {
		fps, primary := st.fingerprints()
		log.Warn("the configured cluster key is not in this node's keyring, which wins (it holds the rotations since): "+
			"put the keyring's primary key in the key file so a fresh data dir would work too",
			"configured", KeyFingerprint(configured), "keyring", fps, "primary", primary, "file", k.path)
	}
	ml, err := memberlist.NewKeyring(st.Keys, st.Primary)
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	k.st, k.ml = st, ml
	return k, nil
}

func readKeyringFile(path string) (keyringState, bool, error) {
	if path == "" {
		return keyringState{}, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return keyringState{}, false, nil
	}
	if err != nil {
		return keyringState{}, false, fmt.Errorf("read keyring %s: %w", path, err)
	}
	st, err := parseKeyringFile(b)
	if err != nil {
		return keyringState{}, false, fmt.Errorf("keyring %s (restore it from a backup, or remove it to start from the configured key): %w", path, err)
	}
	return st, true, nil
}

func parseKeyringFile(b []byte) (keyringState, error) {
	var st keyringState
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return keyringState{}, fmt.Errorf("malformed: %w", err)
	}
	if err := st.validate(); err != nil {
		return keyringState{}, err
	}
	return st, nil
}

// memberlist returns the gossip keyring, kept in step with this one.
func (k *keyring) memberlist() *memberlist.Keyring { return k.ml }

// keys returns the installed keys, primary first (a copy).
func (k *keyring) keys() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	out := [][]byte{bytes.Clone(k.st.Primary)}
	for _, key := range k.st.Keys {
		if !bytes.Equal(key, k.st.Primary) {
			out = append(out, bytes.Clone(key))
		}
	}
	return out
}

// state returns a copy of the keyring.
func (k *keyring) state() keyringState {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.st.clone()
}

// adopt makes st this node's keyring if it is newer than the current one, and reports whether it did.
// Gossip's keyring changes in an order that never leaves a key both sides still use unaccepted: new keys
// first, then the primary, then removals.
func (k *keyring) adopt(st keyringState) (bool, error) {
	if err := st.validate(); err != nil {
		return false, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if st.Index <= k.st.Index {
		return false, nil
	}
	if err := writeKeyringFile(k.path, st); err != nil {
		return false, err
	}
	for _, key := range st.Keys {
		if err := k.ml.AddKey(key); err != nil {
			return false, fmt.Errorf("gossip keyring: %w", err)
		}
	}
	if err := k.ml.UseKey(st.Primary); err != nil {
		return false, fmt.Errorf("gossip keyring: %w", err)
	}
	for _, key := range k.ml.GetKeys() {
		if !st.has(key) {
			if err := k.ml.RemoveKey(key); err != nil {
				return false, fmt.Errorf("gossip keyring: %w", err)
			}
		}
	}
	k.st = st.clone()
	fps, primary := st.fingerprints()
	k.log.Info("cluster keyring changed", "keys", fps, "primary", primary, "raft_index", st.Index)
	return true, nil
}

// writeKeyringFile replaces path atomically (write, sync, rename, sync the directory), mode 0600.
func writeKeyringFile(path string, st keyringState) error {
	if path == "" {
		return nil
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode keyring: %w", err)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, keyringFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing left to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write keyring: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// learnKeyring is the FSM's callback for each applied or restored keyring.
func (c *Cluster) learnKeyring(st keyringState) {
	if c.keys == nil {
		c.log.Warn("ignoring the cluster's replicated keyring: this node has no cluster key", "raft_index", st.Index)
		return
	}
	changed, err := c.keys.adopt(st)
	if err != nil {
		c.log.Error("apply the replicated keyring", "raft_index", st.Index, "err", err)
		return
	}
	if changed {
		c.kickNow() // maintain gossips the new fingerprints (never from the FSM: UpdateNode may block)
	}
}

// syncKeyMeta gossips this node's key fingerprints when they changed.
func (c *Cluster) syncKeyMeta() {
	if c.keys == nil {
		return
	}
	fps, primary := c.keys.state().fingerprints()
	m := c.localMeta()
	if m.PrimaryFP == primary && slices.Equal(m.KeyFPs, fps) {
		return
	}
	c.setInternal(func(m *wireMeta) { m.KeyFPs, m.PrimaryFP = fps, primary })
}
