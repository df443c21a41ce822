package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"

	"github.com/hashicorp/raft"
)

// Hand-over drains (issue 12). When the VIP holder moves the VIP on purpose (it leaves, or hands off to a
// healthier or preferred peer), it keeps serving its open connections for a while, and its successor sends it
// every packet of a flow the successor does not know (vip/flowfwd). The successor must know that before it
// answers ARP for the VIP, or the first packets of those flows meet a reset. So the holder commits a drain
// record to the Raft log while it still leads (StartDrain): the successor's Barrier, which comes before it
// acquires the VIP, has applied every earlier entry, this record included. The record names the node and its
// addresses on the VIP's segment, and its log index is the drain's epoch.
//
// How long a drain lasts is the draining node's own business, and it is told by gossip, which also tells
// whether the node is alive: a node gossips DrainDone, the epoch up to which its drains are over (it sets it
// to its latest record whenever it is not draining, so a restarted node, which has no old flows, never
// attracts any). A drain is active while its record is newer than the node's DrainDone and gossip says the
// node is alive (not suspect, dead or gone): a successor stops forwarding to a node that crashed within
// gossip's failure detection, so its clients get the immediate reset they would get without hand-over.

const (
	maxDrainAddrs   = 4  // a node's addresses on the VIP's segment: one per family is what is needed
	maxDrainRecords = 64 // more nodes than any vipd cluster has; bounds what a snapshot may hold
)

// Drain is one node's hand-over drain as the cluster sees it.
type Drain struct {
	// Node drained, at Addrs (its addresses on the VIP's segment, where a successor forwards).
	Node  string
	Addrs []netip.Addr
	// Epoch is the log index of the record.
	Epoch uint64
}

// drainRecord is the replicated form.
type drainRecord struct {
	Node  string   `json:"node"`
	Addrs []string `json:"addrs"`
	Epoch uint64   `json:"-"` // the entry's index
}

func (r drainRecord) validate() error {
	if !ValidNodeName(r.Node) {
		return fmt.Errorf("drain record names an invalid node %q", r.Node)
	}
	if len(r.Addrs) == 0 || len(r.Addrs) > maxDrainAddrs {
		return fmt.Errorf("drain record of %s has %d addresses, want 1-%d", r.Node, len(r.Addrs), maxDrainAddrs)
	}
	for _, a := range r.Addrs {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.IsGlobalUnicast() && !ip.IsPrivate() {
			return fmt.Errorf("drain record of %s: %q is not a unicast address", r.Node, a)
		}
	}
	return nil
}

func (r drainRecord) drain() Drain {
	d := Drain{Node: r.Node, Epoch: r.Epoch}
	for _, a := range r.Addrs {
		d.Addrs = append(d.Addrs, netip.MustParseAddr(a)) // validated
	}
	return d
}

func encodeDrainCmd(r drainRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode drain record: %w", err)
	}
	return append([]byte{cmdDrain}, b...), nil
}

func decodeDrainCmd(b []byte) (drainRecord, error) {
	var r drainRecord
	if err := decodeStrict(b, &r); err != nil {
		return drainRecord{}, fmt.Errorf("decode drain record: %w", err)
	}
	return r, r.validate()
}

// StartDrain records, through the Raft log, that this node starts a hand-over drain with its flows at addrs,
// and returns the drain's epoch. Leader-only: the VIP holder calls it before it releases the VIP and hands
// leadership on, so the successor's barrier sees it.
func (c *Cluster) StartDrain(ctx context.Context, addrs []netip.Addr) (uint64, error) {
	r := c.rft.Load()
	if r == nil || c.stopped.Load() {
		return 0, ErrNotStarted
	}
	if r.State() != raft.Leader {
		return 0, fmt.Errorf("start drain: %w", ErrNotLeader)
	}
	rec := drainRecord{Node: c.cfg.NodeName}
	for _, a := range addrs {
		rec.Addrs = append(rec.Addrs, a.String())
	}
	if err := rec.validate(); err != nil {
		return 0, fmt.Errorf("start drain: %w", err)
	}
	cmd, err := encodeDrainCmd(rec)
	if err != nil {
		return 0, err
	}
	t, err := opTimeout(ctx)
	if err != nil {
		return 0, err
	}
	f := r.Apply(cmd, t)
	if err := f.Error(); err != nil {
		return 0, fmt.Errorf("start drain: %w", err)
	}
	if err, ok := f.Response().(error); ok {
		return 0, fmt.Errorf("start drain: %w", err)
	}
	c.log.Info("hand-over drain recorded", "epoch", f.Index(), "addrs", rec.Addrs)
	return f.Index(), nil
}

// Drains returns the drains recorded in the Raft log, one per node (its latest), oldest first, whatever
// their state. ActiveDrains says which are under way.
func (c *Cluster) Drains() []Drain { return c.fsm.drains() }

// ActiveDrains returns the drains under way of other nodes — newer than the node's gossiped DrainDone, the
// node alive in gossip — oldest first: the last one is the latest hand-over.
func (c *Cluster) ActiveDrains() []Drain {
	var out []Drain
	for _, d := range c.Drains() {
		if d.Node == c.cfg.NodeName {
			continue
		}
		m, ok := c.members.get(d.Node)
		if !ok || m.status != StatusAlive || m.meta.DrainDone >= d.Epoch {
			continue
		}
		out = append(out, d)
	}
	return out
}

// OwnDrainEpoch returns the epoch of this node's latest recorded drain (0 if none): what it gossips as
// DrainDone whenever it is not draining.
func (c *Cluster) OwnDrainEpoch() uint64 {
	for _, d := range c.Drains() {
		if d.Node == c.cfg.NodeName {
			return d.Epoch
		}
	}
	return 0
}

// drains returns the recorded drains, oldest first.
func (f *fsm) drains() []Drain {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Drain, 0, len(f.drainRecs))
	for _, r := range f.drainRecs {
		out = append(out, r.drain())
	}
	slices.SortFunc(out, func(a, b Drain) int { return cmp.Compare(a.Epoch, b.Epoch) })
	return out
}

// setDrain keeps r as its node's latest drain.
func (f *fsm) setDrain(r drainRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.drainRecs == nil {
		f.drainRecs = map[string]drainRecord{}
	}
	if _, ok := f.drainRecs[r.Node]; !ok && len(f.drainRecs) >= maxDrainRecords {
		return fmt.Errorf("%d nodes have drain records already", maxDrainRecords)
	}
	f.drainRecs[r.Node] = r
	return nil
}
