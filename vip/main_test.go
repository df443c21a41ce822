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

func TestMain(m *testing.M) {
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
