package cluster

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// Meta is what a node gossips about itself: its health (from package health), where its raft listens, and the
// VIP manager's state, so every node (and `vipd members`) sees every other node's view without an RPC.
type Meta struct {
	Healthy         bool   `json:"h,omitempty"`
	ListenerUp      bool   `json:"l,omitempty"`
	HealthyBackends int    `json:"hb,omitempty"`
	TotalBackends   int    `json:"tb,omitempty"`
	RaftAddr        string `json:"r,omitempty"`
	Version         string `json:"v,omitempty"`
	Witness         bool   `json:"w,omitempty"`
	Priority        int    `json:"p,omitempty"`
	VIPHeld         bool   `json:"vip,omitempty"`
}

// wireMeta is Meta plus the cluster's own coordination fields, which callers must not change.
type wireMeta struct {
	Meta
	// Bootstrap is the node's -bootstrap-expect (0 = does not bootstrap).
	Bootstrap int `json:"be,omitempty"`
	// HasState reports that the node has raft state (bootstrapped, or added to a cluster).
	HasState bool `json:"hs,omitempty"`
	// Leaving is set by Leave so the leader removes the node from raft before it leaves gossip.
	Leaving bool `json:"lv,omitempty"`
	// ClusterID identifies the node's cluster once known (identity.go); empty before.
	ClusterID string `json:"cid,omitempty"`
}

func encodeMeta(m wireMeta) ([]byte, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode node meta: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("encode node meta: %d bytes exceeds memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

func decodeMeta(b []byte) (wireMeta, error) {
	var m wireMeta
	if len(b) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode node meta: %w", err)
	}
	return m, nil
}
