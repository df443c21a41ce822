package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
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

// TestReloadExtendsHandoverDrainPorts: a reload that adds a frontend on a new port extends the flow rules
// to it at once, and one that removes the frontend again keeps its port (its connections may still drain).
// Before, the rules knew only the ports of the start, so a planned move reset every connection of a
// frontend added by a reload until the agent was restarted.
func TestReloadExtendsHandoverDrainPorts(t *testing.T) {
	b := nameServer(t, "b1")
	cfg := proxyConfig(b.Addr().String())
	cfg.Dev, cfg.Node, cfg.Bind = true, "lb1", "127.0.0.1"
	port1, port2 := freePort(t), freePort(t)
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", port1)
	cfg.GossipPort, cfg.RaftPort = freePort(t), freePort(t)
	cfg.VIPs = []string{"192.0.2.50/24"}
	cfg.Nice = 0
	var mu sync.Mutex
	next := cfg
	source := func() (Config, error) {
		mu.Lock()
		defer mu.Unlock()
		return next, nil
	}
	kernel := viptest.NewFakeKernel()
	a, err := New(cfg, Options{Logger: testutil.NewLogSink(t).Logger(0), Kernel: kernel, Version: "test", Reload: source})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-errc })
	testutil.WaitFor(t, 10*time.Second, "the dev leader to hold the VIP", func() bool {
		return kernel.Has(netip.MustParseAddr("192.0.2.50"))
	})
	if got, want := kernel.MarkedPorts(), []uint16{uint16(port1)}; !slices.Equal(got, want) {
		t.Fatalf("marked ports %v at start, want %v", got, want)
	}

	mu.Lock()
	next.Backends = nil
	next.Frontends = []FrontendConfig{
		{Name: "default", Listen: cfg.Listen, Backends: []BackendConfig{{Addr: b.Addr().String()}}},
		{Name: "extra", Listen: fmt.Sprintf("127.0.0.1:%d", port2), Backends: []BackendConfig{{Addr: b.Addr().String()}}},
	}
	mu.Unlock()
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload adding a frontend: %v", err)
	}
	both := []uint16{uint16(port1), uint16(port2)}
	testutil.WaitFor(t, 5*time.Second, "the flow rules to cover the added frontend's port", func() bool {
		return slices.Equal(kernel.MarkedPorts(), both)
	})

	mu.Lock()
	next.Frontends = next.Frontends[:1]
	mu.Unlock()
	if err := a.Reload(context.Background()); err != nil {
		t.Fatalf("Reload removing the frontend: %v", err)
	}
	if got := a.vip.Ports(); !slices.Equal(got, both) {
		t.Errorf("ports after removing the frontend: %v, want %v kept for its draining connections", got, both)
	}
}
