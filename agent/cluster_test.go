package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/vipd/vipd/vip/viptest"
)

// TestDevAgentHoldsVIPAndReleasesOnShutdown runs the whole agent — proxy, health checks, a real one-node Raft
// cluster (-dev) and the VIP manager — with only the kernel side faked, and checks what an operator sees.
func TestDevAgentHoldsVIPAndReleasesOnShutdown(t *testing.T) {
	b := nameServer(t, "b1")
	cfg := proxyConfig(b.Addr().String())
	cfg.Dev = true
	cfg.Listen = fmt.Sprintf("127.0.0.1:%d", freePort(t)) // a hand-over drain (on by default) needs the port
	cfg.Node = "lb1"
	cfg.Bind = "127.0.0.1"
	cfg.GossipPort, cfg.RaftPort = freePort(t), freePort(t)
	cfg.VIPs = []string{"192.0.2.50/24"}
	cfg.GARPRefresh = 100 * time.Millisecond
	cfg.Nice = 0
	kernel := viptest.NewFakeKernel()

	a, err := New(cfg, Options{Logger: testLogger(t), Kernel: kernel, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-errc
	}()
	_, adminAddr := a.Addrs()
	admin := "http://" + adminAddr.String()
	vipAddr := netip.MustParseAddr("192.0.2.50")

	waitFor(t, 10*time.Second, "the dev leader to hold the VIP", func() bool { return kernel.Has(vipAddr) })
	waitFor(t, 5*time.Second, "members to show the holder", func() bool {
		var mr MembersResponse
		_, body := get(t, admin+"/v1/members")
		if err := json.Unmarshal([]byte(body), &mr); err != nil {
			t.Fatalf("/v1/members: %v: %s", err, body)
		}
		return mr.Leader == "lb1" && mr.VIPHolder == "lb1" && len(mr.Members) == 1 && mr.Members[0].Role == "leader"
	})
	waitFor(t, 5*time.Second, "status to show the held VIP and the cluster ID", func() bool {
		var st StatusResponse
		_, body := get(t, admin+"/v1/status")
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("/v1/status: %v: %s", err, body)
		}
		return st.VIPHeld && st.Role == "leader" && st.ClusterID != ""
	})
	if kernel.Announces(vipAddr) == 0 || !kernel.Answering() {
		t.Errorf("holder does not announce (%d) or answer ARP (%v)", kernel.Announces(vipAddr), kernel.Answering())
	}
	_, metrics := get(t, admin+"/metrics")
	for _, want := range []string{"vipd_vip_held 1", "vipd_garp_sent_total"} {
		if !contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// vipd leave: the agent releases the VIP, leaves and Run returns nil.
	if code := post(t, admin+"/v1/leave", `{}`, nil); code != http.StatusOK {
		t.Fatalf("POST /v1/leave = %d", code)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run after leave: %v", err)
		}
		errc <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not stop after POST /v1/leave")
	}
	if kernel.Has(vipAddr) || kernel.Answering() {
		t.Error("VIP still held or answered after the agent stopped")
	}
}
