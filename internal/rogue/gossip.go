package rogue

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"

	"github.com/hashicorp/memberlist"
)

// GossipConfig describes a foreign memberlist node.
type GossipConfig struct {
	// Name is the node name it claims (it may be anything, escapes included).
	Name string
	// BindAddr and Port are where it listens (Port 0 picks a free one).
	BindAddr string
	Port     int
	// Key, if set, encrypts its gossip (a wrong key); nil gossips in plain text.
	Key []byte
	// Meta is the metadata it gossips; see ClaimMeta.
	Meta []byte
}

// GossipNode is a running foreign memberlist node.
type GossipNode struct {
	ml *memberlist.Memberlist
}

// ClaimMeta is vipd's gossip metadata claiming everything that wins: healthy with all backends, the VIP
// holder's priority, Raft state (which blocks a bootstrap), bootstrap-expect 3 and a Raft address.
func ClaimMeta(raftAddr string) []byte {
	b, _ := json.Marshal(map[string]any{"h": true, "l": true, "hb": 3, "tb": 3, "p": 1000, "hs": true, "be": 3,
		"r": raftAddr, "v": "rogue"})
	return b
}

type metaDelegate struct{ meta []byte }

func (d metaDelegate) NodeMeta(limit int) []byte {
	if len(d.meta) > limit {
		return d.meta[:limit]
	}
	return d.meta
}
func (metaDelegate) NotifyMsg([]byte)                    {}
func (metaDelegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (metaDelegate) LocalState(bool) []byte              { return nil }
func (metaDelegate) MergeRemoteState(buf []byte, _ bool) {}

// StartGossip starts a foreign memberlist node; Join makes it try to join.
func StartGossip(cfg GossipConfig) (*GossipNode, error) {
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.Port
	mc.AdvertisePort = cfg.Port
	mc.Delegate = metaDelegate{meta: cfg.Meta}
	mc.Logger = log.New(io.Discard, "", 0)
	if cfg.Key != nil {
		kr, err := memberlist.NewKeyring(nil, cfg.Key)
		if err != nil {
			return nil, err
		}
		mc.Keyring = kr
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("rogue gossip node: %w", err)
	}
	return &GossipNode{ml: ml}, nil
}

// Join tries to join the gossip cluster at addrs (host:port); it returns how many answered.
func (g *GossipNode) Join(addrs ...string) (int, error) { return g.ml.Join(addrs) }

// Members lists the names the rogue node sees (itself included).
func (g *GossipNode) Members() []string {
	var out []string
	for _, m := range g.ml.Members() {
		out = append(out, m.Name)
	}
	return out
}

// Addr is the rogue node's gossip address.
func (g *GossipNode) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), fmt.Sprint(n.Port))
}

// Shutdown stops it without leaving (it vanishes, as a crashed node would).
func (g *GossipNode) Shutdown() error { return g.ml.Shutdown() }
