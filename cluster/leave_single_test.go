package cluster

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
)

// TestLeaveSingleVoterQuietly: the only voter (-dev, or the last node of a cluster) has nobody to hand
// leadership to, so Leave must not try and warn "leadership transfer failed: cannot find peer" on every
// stop; it leaves without a warning or an error.
func TestLeaveSingleVoterQuietly(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  func(ip string, sink *testutil.LogSink) Config
	}{
		{"dev", func(ip string, sink *testutil.LogSink) Config {
			return Config{NodeName: "dev", BindAddr: ip, Dev: true, Logger: sink.Logger(slog.LevelDebug)}
		}},
		{"bootstrap-expect 1", func(ip string, sink *testutil.LogSink) Config {
			return Config{NodeName: "solo", BindAddr: ip, DataDir: t.TempDir(), BootstrapExpect: 1, EncryptKey: testKey,
				Logger: sink.Logger(slog.LevelDebug)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := testutil.NewLogSink(t)
			c, err := New(tc.cfg(randomNet()+"1", sink))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Shutdown() })
			testutil.WaitFor(t, 5*time.Second, "the single node leads", func() bool { return c.IsLeader() })
			if n := c.otherVoters(); n != 0 {
				t.Fatalf("otherVoters = %d for a single-node cluster", n)
			}
			mark := sink.Mark()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.Leave(ctx); err != nil {
				t.Fatalf("Leave: %v", err)
			}
			for _, bad := range []string{"level=WARN", "level=ERROR", "cannot find peer", "leadership transfer"} {
				if sink.ContainsLineSince(mark, bad) {
					t.Errorf("Leave of the only voter logged %q:\n%s", bad, sink.String()[mark:])
				}
			}
		})
	}
}

// TestLeaveLeaderTransfers is the other side: a leader with peers still hands leadership over on Leave.
func TestLeaveLeaderTransfers(t *testing.T) {
	tc := makeCluster(t, 3, true)
	leader := tc.stable()
	if n := tc.nodes[leader].c.otherVoters(); n != 2 {
		t.Fatalf("otherVoters = %d, want 2", n)
	}
	mark := tc.nodes[leader].logs.Mark()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tc.nodes[leader].c.Leave(ctx); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if !tc.nodes[leader].logs.ContainsLineSince(mark, "leave: leadership transferred") {
		t.Errorf("the leader left without transferring leadership:\n%s", strings.TrimSpace(tc.nodes[leader].logs.String()[mark:]))
	}
}
