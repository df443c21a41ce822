package cluster

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"

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
	// HealthyFrontends of TotalFrontends: how a not fully healthy node ranks against another (the VIP goes
	// only to a strictly healthier peer).
	HealthyFrontends int `json:"hf,omitempty"`
	TotalFrontends   int `json:"tf,omitempty"`
	// Draining is set while the node serves the flows of a VIP it handed over (drain.go); DrainDone is the
	// epoch up to which its drains are over.
	Draining  bool   `json:"dr,omitempty"`
	DrainDone uint64 `json:"dd,omitempty"`
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
	// Security is the node's security mode.
	Security SecurityMode `json:"sec,omitempty"`
	// KeyFPs are the fingerprints of the node's installed cluster keys (sorted) and PrimaryFP its primary's,
	// so the leader can refuse a keyring step that would cut a member off.
	KeyFPs    []string `json:"kf,omitempty"`
	PrimaryFP string   `json:"kp,omitempty"`
}

// Bounds on gossiped metadata fields: a node's metadata comes from the network, and what passes here is
// shown by `vipd members` and steers bootstrap and reconcile.
const (
	maxMetaVersion  = 64
	maxMetaCount    = 1 << 20
	maxMetaPriority = 1 << 20
	maxBootstrap    = 64
	maxMetaSecurity = 16
)

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

// decodeMeta parses and checks a node's gossiped metadata. A node whose metadata is refused reads as having
// none: it is listed, but never bootstraps with this node nor becomes a Raft server.
func decodeMeta(b []byte) (wireMeta, error) {
	var m wireMeta
	if len(b) == 0 {
		return m, nil
	}
	if len(b) > memberlist.MetaMaxSize {
		return wireMeta{}, fmt.Errorf("decode node meta: %d bytes exceeds memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return wireMeta{}, fmt.Errorf("decode node meta: %w", err)
	}
	if err := m.check(); err != nil {
		return wireMeta{}, fmt.Errorf("decode node meta: %w", err)
	}
	return m, nil
}

// check refuses metadata no vipd node would send.
func (m wireMeta) check() error {
	if m.RaftAddr != "" {
		ap, err := netip.ParseAddrPort(m.RaftAddr)
		if err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "" {
			return fmt.Errorf("raft address %q is not IP:port", m.RaftAddr)
		}
	}
	if len(m.Version) > maxMetaVersion || !printable(m.Version) {
		return fmt.Errorf("version %q: longer than %d or not printable ASCII", m.Version, maxMetaVersion)
	}
	for _, v := range []int{m.HealthyBackends, m.TotalBackends, m.HealthyFrontends, m.TotalFrontends} {
		if v < 0 || v > maxMetaCount {
			return fmt.Errorf("backend count %d out of range", v)
		}
	}
	if m.Priority < 0 || m.Priority > maxMetaPriority {
		return fmt.Errorf("priority %d out of range", m.Priority)
	}
	if m.Bootstrap < 0 || m.Bootstrap > maxBootstrap {
		return fmt.Errorf("bootstrap-expect %d out of range 0-%d", m.Bootstrap, maxBootstrap)
	}
	if m.ClusterID != "" {
		if err := checkClusterID(m.ClusterID); err != nil {
			return err
		}
	}
	// A mode this version does not know (a newer vipd's) is shown as it is, if it is short and printable.
	if len(m.Security) > maxMetaSecurity || !printable(string(m.Security)) {
		return fmt.Errorf("security mode %q: longer than %d or not printable ASCII", m.Security, maxMetaSecurity)
	}
	if len(m.KeyFPs) > maxKeys {
		return fmt.Errorf("%d key fingerprints, at most %d", len(m.KeyFPs), maxKeys)
	}
	if m.PrimaryFP != "" && !validFP(m.PrimaryFP) {
		return fmt.Errorf("primary key fingerprint %q is not %d lower-case hex digits", m.PrimaryFP, 2*fpLen)
	}
	for _, fp := range m.KeyFPs {
		if !validFP(fp) {
			return fmt.Errorf("key fingerprint %q is not %d lower-case hex digits", fp, 2*fpLen)
		}
	}
	return nil
}

func validFP(fp string) bool {
	b, err := hex.DecodeString(fp)
	return err == nil && len(b) == fpLen && fp == hex.EncodeToString(b)
}

// printable reports whether s is printable ASCII (no control characters, no terminal escapes).
func printable(s string) bool {
	return !bytes.ContainsFunc([]byte(s), func(r rune) bool { return r < 0x20 || r > 0x7e })
}
