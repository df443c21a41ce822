package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
)

// Cluster identity. A node of one cluster that is pointed (-join) at another must be refused, and the running
// cluster must not notice: gossip does not know clusters apart by itself, and the reconcile loop would add any
// alive member to raft.
//
// The ID is random, chosen once per cluster: the first leader (on its first maintain pass) commits a
// cmdSetClusterID entry with 16 random bytes, and the FSM keeps the first such entry it applies, so every
// replica agrees and the ID lives in the raft log and snapshots like any replicated state (Recover keeps
// it). Deriving it from the bootstrap server list instead would give a re-deployed cluster with the same
// names the same ID. Each node also writes the ID to <data-dir>/cluster-id as soon as it learns it, so after
// a restart it is gossiped before raft has replayed its log. A node without an ID (new, or not yet added)
// accepts everyone, and learns its cluster's ID when the leader replicates the log to it.
//
// memberlist's merge delegate (on every join, on both sides) and alive delegate (every alive message, so a
// foreign node cannot slip in through third parties either) refuse a node whose gossiped ID differs from ours
// when both are known. A node whose own -join was refused for that reason reports ErrForeignCluster in
// Status().Problem and stops gossiping; the refusing side only logs.

// ErrForeignCluster is reported (Status().Problem, logs) when a peer belongs to a different cluster.
var ErrForeignCluster = errors.New("node belongs to a different cluster")

const clusterIDFile = "cluster-id"

func newClusterID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func readClusterID(dataDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, clusterIDFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster ID: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeClusterID(dataDir, id string) error {
	tmp := filepath.Join(dataDir, clusterIDFile+".tmp")
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return fmt.Errorf("write cluster ID: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, clusterIDFile)); err != nil {
		return fmt.Errorf("write cluster ID: %w", err)
	}
	return nil
}

// learnClusterID is the FSM's callback: the replicated ID is now known (or replaced by a restore).
func (c *Cluster) learnClusterID(id string) {
	if old := c.localMeta().ClusterID; old == id {
		return
	} else if old != "" {
		c.log.Warn("cluster ID in the raft log differs from the cluster-id file; using the raft log's", "file", old, "raft", id)
	}
	if err := writeClusterID(c.dataDir, id); err != nil {
		c.log.Error("persist cluster ID", "err", err)
	}
	c.setInternal(func(m *wireMeta) { m.ClusterID = id })
	c.log.Info("cluster ID known", "cluster_id", id)
}

// assignClusterID runs on the leader while the FSM has no ID: after a barrier (so every earlier entry, and
// with it any ID an earlier leader committed, is applied) it commits a new random ID.
func (c *Cluster) assignClusterID(r *raft.Raft) {
	if err := r.Barrier(raftChangeTimeout).Error(); err != nil {
		c.log.Warn("cluster ID: barrier", "err", err)
		return
	}
	if c.fsm.clusterID() != "" {
		return
	}
	f := r.Apply(append([]byte{cmdSetClusterID}, newClusterID()...), raftChangeTimeout)
	if err := f.Error(); err != nil {
		c.log.Warn("cluster ID: commit", "err", err)
		return
	}
	c.log.Info("cluster ID assigned", "cluster_id", f.Response())
}

// foreignPeer is the last node this node refused for belonging to another cluster.
type foreignPeer struct {
	name, addr, id string
}

// refusals deduplicates the refusal log: memberlist may present the same foreign node many times.
type refusals struct {
	mu     sync.Mutex
	logged map[string]bool
}

func (r *refusals) first(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.logged == nil {
		r.logged = map[string]bool{}
	}
	if r.logged[key] {
		return false
	}
	r.logged[key] = true
	return true
}

// checkCluster is the merge/alive delegates' filter. It runs under memberlist's locks: it only reads local
// state, logs and records.
func (c *Cluster) checkCluster(n *memberlist.Node) error {
	if n.Name == c.cfg.NodeName {
		return nil
	}
	theirs, _ := decodeMeta(n.Meta) // undecodable meta: no ID, and never added to raft (no raft address)
	ours := c.localMeta().ClusterID
	if ours == "" || theirs.ClusterID == "" || ours == theirs.ClusterID {
		return nil
	}
	addr := net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
	c.foreign.Store(&foreignPeer{name: n.Name, addr: addr, id: theirs.ClusterID})
	if c.foreignLog.first(n.Name + "/" + theirs.ClusterID) {
		c.log.Error(fmt.Sprintf("refusing node %s at %s: it belongs to cluster %s, this node to cluster %s: fix the -join that points one at the other, or, if %s should join this cluster, wipe %s's -data-dir",
			n.Name, addr, theirs.ClusterID, ours, n.Name, n.Name), "peer", n.Name, "peer_cluster_id", theirs.ClusterID, "cluster_id", ours)
	}
	return fmt.Errorf("%w: %s belongs to cluster %s, this node (%s) to cluster %s", ErrForeignCluster, n.Name, theirs.ClusterID, c.cfg.NodeName, ours)
}
