package cluster

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vipd/vipd/internal/testutil"
)

func TestDrainRecordsInTheFSM(t *testing.T) {
	f := newFSM(nil, nil)
	apply := func(idx uint64, r drainRecord) any {
		cmd, err := encodeDrainCmd(r)
		if err != nil {
			t.Fatal(err)
		}
		return f.Apply(&raft.Log{Index: idx, Data: cmd})
	}
	if res := apply(7, drainRecord{Node: "lb1", Addrs: []string{"10.0.0.11"}}); res != nil {
		t.Fatalf("apply: %v", res)
	}
	apply(9, drainRecord{Node: "lb2", Addrs: []string{"10.0.0.12", "fd00::12"}})
	apply(12, drainRecord{Node: "lb1", Addrs: []string{"10.0.0.11"}}) // lb1 drains again: the latest counts
	got := f.drains()
	if len(got) != 2 || got[0].Node != "lb2" || got[0].Epoch != 9 || got[1].Node != "lb1" || got[1].Epoch != 12 {
		t.Fatalf("drains = %+v, want lb2@9 then lb1@12", got)
	}
	for _, bad := range []drainRecord{
		{Node: "bad name", Addrs: []string{"10.0.0.1"}},
		{Node: "lb3"},
		{Node: "lb3", Addrs: []string{"not-an-ip"}},
		{Node: "lb3", Addrs: []string{"224.0.0.1"}},
	} {
		if _, ok := apply(20, bad).(error); !ok {
			t.Errorf("a malformed record %+v was applied", bad)
		}
	}
	// Snapshots keep the records and their epochs.
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(nil, nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := g.drains(); len(got) != 2 || got[1].Epoch != 12 || got[0].Addrs[1] != netip.MustParseAddr("fd00::12") {
		t.Errorf("restored drains = %+v", got)
	}
}

// TestStartDrainOnARealCluster: the holder's record reaches every node through the log; other nodes see it as
// active until the drainer gossips DrainDone, or stops being alive.
func TestStartDrainOnARealCluster(t *testing.T) {
	tc := makeCluster(t, 3, true, calmOpt)
	leader := tc.stable()
	c := tc.nodes[leader].c
	follower := tc.nodes[(leader+1)%3].c
	if _, err := follower.StartDrain(context.Background(), []netip.Addr{netip.MustParseAddr("10.0.0.12")}); err == nil {
		t.Error("a follower recorded a drain")
	}
	epoch, err := c.StartDrain(context.Background(), []netip.Addr{netip.MustParseAddr("10.0.0.11")})
	if err != nil {
		t.Fatal(err)
	}
	name := tc.nodes[leader].cfg.NodeName
	testutil.WaitFor(t, 5*time.Second, "the follower to see the drain as active", func() bool {
		d := follower.ActiveDrains()
		return len(d) == 1 && d[0].Node == name && d[0].Epoch == epoch
	})
	if c.OwnDrainEpoch() != epoch {
		t.Errorf("OwnDrainEpoch = %d, want %d", c.OwnDrainEpoch(), epoch)
	}
	if len(c.ActiveDrains()) != 0 {
		t.Error("a node sees its own drain as one to forward to")
	}
	c.UpdateMeta(func(m *Meta) { m.DrainDone = epoch })
	testutil.WaitFor(t, 5*time.Second, "the drain to end once gossip says so", func() bool { return len(follower.ActiveDrains()) == 0 })
}
