package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/vipd/vipd/internal/testutil"
)

// TestForeignCluster runs two independent clusters, A = {n1, n2} and B = {n3}, then restarts n3 with -join
// pointing at A. The join is refused on both sides: n3 reports ErrForeignCluster in Status().Problem and
// stops gossiping; A logs the refusal, never lists n3, keeps its raft configuration and its leader.
func TestForeignCluster(t *testing.T) {
	tc := makeCluster(t, 3, false, calmOpt, func(i int, cfg *Config) {
		if i < 2 {
			cfg.BootstrapExpect = 2
			cfg.Join = cfg.Join[:1] // n1 joins n2 and n2 joins n1; neither knows n3
		} else {
			cfg.BootstrapExpect = 1
			cfg.Join = nil
		}
	})
	for i := range tc.nodes {
		tc.start(i)
	}
	// Two clusters, two leaders: tc.waitLeader would call that split brain.
	leaderA := -1
	testutil.WaitFor(t, 10*time.Second, "a leader in A and in B", func() bool {
		a0, a1 := tc.nodes[0].c.IsLeader(), tc.nodes[1].c.IsLeader()
		if a0 && a1 {
			t.Fatal("two leaders in A")
		}
		if a0 {
			leaderA = 0
		} else if a1 {
			leaderA = 1
		}
		return (a0 || a1) && tc.nodes[2].c.IsLeader()
	})
	testutil.WaitFor(t, 5*time.Second, "A has 2 voters", func() bool { return len(tc.voters(leaderA)) == 2 })
	var idA, idB string
	testutil.WaitFor(t, 5*time.Second, "cluster IDs known", func() bool {
		idA, idB = tc.nodes[0].c.Status().ClusterID, tc.nodes[2].c.Status().ClusterID
		return idA != "" && idB != "" && tc.nodes[1].c.Status().ClusterID == idA
	})
	if idA == idB {
		t.Fatalf("independent clusters share the ID %s", idA)
	}
	t.Logf("cluster A %s, cluster B %s", idA, idB)
	// A's members gossip the ID too.
	for _, n := range []string{"n1", "n2"} {
		if n == tc.nodes[leaderA].cfg.NodeName {
			continue
		}
		testutil.WaitFor(t, 5*time.Second, n+" gossips A's cluster ID", func() bool {
			rec, _ := tc.nodes[leaderA].c.members.get(n)
			return rec.meta.ClusterID == idA
		})
	}
	before, err := tc.nodes[leaderA].c.configuration()
	if err != nil {
		t.Fatal(err)
	}

	// Restart n3 (keeping its data dir) pointed at A.
	tc.kill(2)
	tc.nodes[2].cfg.Join = []string{tc.nodes[0].ip, tc.nodes[1].ip}
	tc.nodes[2].logs = testutil.NewLogSink(t)
	tc.nodes[2].cfg.Logger = tc.nodes[2].logs.Logger(slog.LevelInfo)
	tc.start(2)
	bad := tc.nodes[2].c
	if id := bad.Status().ClusterID; id != idB {
		t.Fatalf("restarted n3 has cluster ID %q before raft replay, want %s from its data dir", id, idB)
	}
	testutil.WaitFor(t, 10*time.Second, "n3 reports the foreign cluster", func() bool { return bad.Status().Problem != "" })
	p := bad.Status().Problem
	t.Logf("n3 problem: %s", p)
	for _, want := range []string{ErrForeignCluster.Error(), idA, idB, "-join", "-data-dir"} {
		if !strings.Contains(p, want) {
			t.Errorf("problem %q does not mention %q", p, want)
		}
	}
	if bad.Status().Joined {
		t.Error("n3 reports joined")
	}
	testutil.WaitFor(t, 2*time.Second, "A logs the refusal", func() bool {
		return tc.nodes[0].logs.ContainsLine("refusing node n3", idA, idB) || tc.nodes[1].logs.ContainsLine("refusing node n3", idA, idB)
	})
	// Give gossip time to (wrongly) spread n3, and check A stays untouched.
	consistently(t, time.Second, "A untouched by n3", func() error {
		for i := range 2 {
			for _, m := range tc.nodes[i].c.Members() {
				if m.Name == "n3" {
					return fmt.Errorf("n%d lists the foreign node: %+v", i+1, m)
				}
			}
			if st := tc.nodes[i].c.Status(); st.Problem != "" || st.ClusterID != idA {
				return fmt.Errorf("n%d disturbed: %+v", i+1, st)
			}
		}
		return nil
	})
	after, err := tc.nodes[leaderA].c.configuration()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(before.Servers, after.Servers) {
		t.Errorf("A's raft configuration changed: %v -> %v", before.Servers, after.Servers)
	}
	if got := tc.leaders(); !slices.Contains(got, leaderA) || !tc.nodes[leaderA].c.IsLeader() {
		t.Errorf("A's leader n%d lost leadership: leaders %v", leaderA+1, got)
	}
	// n3 still runs its own one-node cluster.
	if !bad.IsLeader() {
		t.Error("n3 no longer leads its own cluster")
	}
}

// TestClusterIDSurvivesRecover: Recover rewrites the log into a snapshot; the ID must be in it.
func TestClusterIDSurvivesRecover(t *testing.T) {
	tc := makeCluster(t, 1, true)
	n1 := tc.nodes[0]
	testutil.WaitFor(t, 10*time.Second, "cluster ID", func() bool { return n1.c.Status().ClusterID != "" })
	id := n1.c.Status().ClusterID
	tc.kill(0)
	if err := Recover(n1.cfg.DataDir, []Peer{{Name: "n1", Addr: n1.c.raftAddr}}); err != nil {
		t.Fatal(err)
	}
	// Remove the file copy, to prove that the raft snapshot Recover wrote carries the ID.
	if err := os.Remove(filepath.Join(n1.cfg.DataDir, clusterIDFile)); err != nil {
		t.Fatal(err)
	}
	mark := n1.logs.Mark()
	tc.start(0)
	testutil.WaitFor(t, 5*time.Second, "ID restored from the snapshot", func() bool { return n1.c.Status().ClusterID == id })
	testutil.WaitFor(t, 5*time.Second, "recovered node leads", func() bool { return n1.c.IsLeader() })
	if err := n1.c.Barrier(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n1.logs.ContainsLineSince(mark, "cluster ID assigned") || n1.c.Status().ClusterID != id {
		t.Errorf("recovered node assigned a new cluster ID (now %q, was %s)", n1.c.Status().ClusterID, id)
	}
	if b, err := os.ReadFile(filepath.Join(n1.cfg.DataDir, clusterIDFile)); err != nil || strings.TrimSpace(string(b)) != id {
		t.Errorf("cluster-id file not rewritten: %q, %v", b, err)
	}
}

func TestFSM(t *testing.T) {
	var learned []string
	f := newFSM(func(id string) { learned = append(learned, id) }, nil)
	apply := func(id string) any {
		return f.Apply(&raft.Log{Type: raft.LogCommand, Data: append([]byte{cmdSetClusterID}, id...)})
	}
	if got, ok := f.Apply(&raft.Log{Type: raft.LogCommand, Data: []byte{99, 1}}).(error); !ok || !errors.Is(got, errBadCommand) {
		t.Errorf("unknown command = %v, want errBadCommand", got)
	}
	if got := apply("aa"); got != "aa" {
		t.Errorf("first set = %v", got)
	}
	if got := apply("bb"); got != "aa" {
		t.Errorf("second set = %v, want the first ID to stay", got)
	}
	snap, _ := f.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := newFSM(func(id string) { learned = append(learned, "restored:"+id) }, nil)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if g.clusterID() != "aa" {
		t.Errorf("restored ID = %q", g.clusterID())
	}
	old := newFSM(nil, nil) // snapshot written before the cluster ID existed
	if err := old.Restore(io.NopCloser(bytes.NewReader(nil))); err != nil || old.clusterID() != "" {
		t.Errorf("empty snapshot: err %v, ID %q", err, old.clusterID())
	}
	if !slices.Equal(learned, []string{"aa", "restored:aa"}) {
		t.Errorf("callbacks = %v", learned)
	}
}

type memSink struct{ bytes.Buffer }

func (*memSink) ID() string    { return "mem" }
func (*memSink) Cancel() error { return nil }
func (*memSink) Close() error  { return nil }
