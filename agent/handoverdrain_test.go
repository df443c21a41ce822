package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip/viptest"
)

// TestHandoverDrainReachesTheVIPManager checks that -handover-drain, on by default, reaches the VIP manager
// of a whole agent: it installs the flow-marking rules at start, and a leaving holder drains instead of
// dropping its connections, answering `vipd leave` once the drain has begun. The agent once passed the setting on only behind a flag that nothing set, so
// every real agent had hand-over drains off; only the end-to-end test (integration/handover) showed it.
func TestHandoverDrainReachesTheVIPManager(t *testing.T) {
	for _, tc := range []struct {
		name  string
		drain bool
	}{
		{"default on", true},
		{"off", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := nameServer(t, "b1")
			cfg := proxyConfig(b.Addr().String())
			cfg.Dev, cfg.Node, cfg.Bind = true, "lb1", "127.0.0.1"
			cfg.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) // a drain needs the port: 0 is refused
			cfg.GossipPort, cfg.RaftPort = freePort(t), freePort(t)
			cfg.VIPs = []string{"192.0.2.50/24"}
			cfg.Nice = 0
			if !tc.drain {
				cfg.HandoverDrain = false
			}
			kernel := viptest.NewFakeKernel()
			logs := testutil.NewLogSink(t)
			a, err := New(cfg, Options{Logger: logs.Logger(0), Kernel: kernel, Version: "test"})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			t.Cleanup(func() { cancel(); <-errc })
			_, adminAddr := a.Addrs()
			testutil.WaitFor(t, 10*time.Second, "the dev leader to hold the VIP", func() bool {
				return kernel.Has(netip.MustParseAddr("192.0.2.50"))
			})
			if kernel.Marked() != tc.drain {
				t.Errorf("flow-marking rules installed: %v, want %v (-handover-drain=%v)", kernel.Marked(), tc.drain, tc.drain)
			}
			kernel.SetEstablished(1) // a client connected through the VIP: a drain lasts until it is gone
			resp, err := http.Post("http://"+adminAddr.String()+"/v1/leave", "application/json", strings.NewReader(`{}`))
			if err != nil {
				t.Fatalf("POST /v1/leave: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			// Draining, the agent answers before the drain (up to -drain-timeout, longer than a request may last).
			want := map[bool]string{true: "draining", false: "left"}[tc.drain]
			if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != want {
				t.Errorf("POST /v1/leave = %d %q, want 200 %q", resp.StatusCode, body, want)
			}
			kernel.SetEstablished(0)
			if err := <-errc; err != nil {
				t.Fatalf("Run after leave: %v", err)
			}
			errc <- nil // for the cleanup
			if got := logs.Contains(`msg="draining: serving the open connections`); got != tc.drain {
				t.Errorf("the leaving holder logged a drain: %v, want %v", got, tc.drain)
			}
		})
	}
}
