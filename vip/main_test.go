package vip_test

import (
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/internal/testutil"
)

// leakGrace is how long TestMain lets goroutines of stopped components end before it calls them leaked.
// memberlist's probeNode waits on an ack timer of one probe interval (500 ms in package cluster) that
// Shutdown does not stop, so after a real-cluster test it lives on for up to that long; goleak's own retries
// give up after about 0.4 s. A goroutine that is still there after the grace is a leak.
const leakGrace = 3 * time.Second

// agentNice is the agent's default scheduling priority (vipd agent -nice). The real-Raft tests run as the
// agent does: at nice 0, a neighbour saturating the shared cores (another go build) stalls the process for
// longer than the 50 ms Raft lease, the leader steps down for nothing and a "the VIP stays put" check fails
// on a Raft election that vipd would not have had (cluster/config.go records 36 such step-downs in 5
// saturated minutes at nice 0).
const agentNice = -10

func TestMain(m *testing.M) {
	if err := setNice(agentNice); err != nil {
		fmt.Fprintf(os.Stderr, "run at the agent's nice %d (the real-Raft tests may see spurious elections): %v\n",
			agentNice, err)
	}
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(leakGrace)
		for err := goleak.Find(); err != nil; err = goleak.Find() {
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goleak: goroutines left %v after the tests: %v\n", leakGrace, err)
				code = 1
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Exit(code)
}

// waitFor and testLogger forward to internal/testutil for the network-namespace tests (linux_kernel_test.go),
// which another change owns; they go once those call testutil directly.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.WaitFor(t, timeout, what, cond)
}

func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t) }
