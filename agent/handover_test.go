package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/testutil"
	"github.com/vipd/vipd/vip/viptest"
)

// TestLeaveReleasesBeforeTransferBeforeLeave runs three whole agents — proxies, health checks, real Raft and
// gossip with a cluster key on 127.x addresses, VIP managers on one viptest.FakeNetwork, which fails the test
// the instant two nodes hold or answer for the VIP — and makes the holder leave. The shutdown order of
// docs/ARCHITECTURE.md is asserted from the holder's own log: the VIP released first, then leadership handed
// to a healthy peer, then the cluster left; and another node holds the VIP afterwards.
func TestLeaveReleasesBeforeTransferBeforeLeave(t *testing.T) {
	vipPrefix := netip.MustParsePrefix("192.0.2.50/24")
	net := viptest.NewFakeNetwork(t)
	base := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), rand.IntN(256))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte("dmlwZC1hZ2VudC10ZXN0LWNsdXN0ZXIta2V5LTMyYnk=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	backend := nameServer(t, "api")
	type node struct {
		name  string
		a     *Agent
		logs  *testutil.LogSink
		errc  chan error
		admin string
	}
	var nodes []*node
	port := freePort(t)
	for i := range 3 {
		name, ip := fmt.Sprintf("lb%d", i+1), fmt.Sprintf("%s%d", base, i+1)
		cfg := proxyConfig(backend.Addr().String())
		// A fixed port: a hand-over drain (on by default) needs the frontend's port before it listens.
		cfg.Listen, cfg.HTTPAddr = fmt.Sprintf("%s:%d", ip, port), ip+":0"
		cfg.Node, cfg.Bind, cfg.DataDir, cfg.BootstrapExpect = name, ip, filepath.Join(dir, name), 3
		cfg.EncryptFile = keyFile
		for j := range 3 {
			if j != i {
				cfg.Join = append(cfg.Join, fmt.Sprintf("%s%d", base, j+1))
			}
		}
		cfg.VIPs = []string{vipPrefix.String()}
		cfg.GARPRefresh = 100 * time.Millisecond
		cfg.Nice = 0
		logs := testutil.NewLogSink(t)
		a, err := New(cfg, Options{Logger: logs.Logger(0), Kernel: net.Kernel(name), Version: "test"})
		if err != nil {
			t.Fatalf("New %s: %v", name, err)
		}
		n := &node{name: name, a: a, logs: logs, errc: make(chan error, 1)}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { n.errc <- a.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			select {
			case <-n.errc:
			case <-time.After(15 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		})
		_, adminAddr := a.Addrs()
		n.admin = "http://" + adminAddr.String()
		nodes = append(nodes, n)
	}
	vipIP := vipPrefix.Addr()
	holder := func() string {
		h := net.Holders(vipIP)
		if len(h) != 1 {
			return ""
		}
		return h[0]
	}
	testutil.WaitFor(t, 30*time.Second, "one node to hold the VIP", func() bool { return holder() != "" })
	var old *node
	for _, n := range nodes {
		if n.name == holder() {
			old = n
		}
	}
	// Every node must know every peer's health before the holder picks a successor.
	testutil.WaitFor(t, 10*time.Second, "the holder to see both peers healthy", func() bool {
		_, body := get(t, old.admin+"/v1/members")
		return strings.Count(body, `"healthy": true`) == 3
	})
	mark := old.logs.Mark()
	if code := post(t, old.admin+"/v1/leave", `{}`, nil); code != http.StatusOK {
		t.Fatalf("POST /v1/leave = %d", code)
	}
	select {
	case err := <-old.errc:
		if err != nil {
			t.Fatalf("Run of the leaving node: %v", err)
		}
		old.errc <- nil // for the cleanup
	case <-time.After(15 * time.Second):
		t.Fatal("the leaving node did not stop")
	}
	testutil.WaitFor(t, 10*time.Second, "another node to hold the VIP", func() bool { h := holder(); return h != "" && h != old.name })

	log := old.logs.String()[mark:]
	released := strings.Index(log, `msg="VIP released"`)
	handed := strings.Index(log, `msg="leadership handed over before leaving"`)
	stopped := strings.Index(log, `msg="cluster node stopped"`)
	if released < 0 || handed < 0 || stopped < 0 {
		t.Fatalf("leave did not log release (%d), hand-over (%d) and stop (%d):\n%s", released, handed, stopped, log)
	}
	if released > handed || handed > stopped {
		t.Errorf("shutdown order: release at %d, hand-over at %d, cluster stop at %d; want release < hand-over < stop", released, handed, stopped)
	}
	if m := net.MaxHolders(vipIP); m > 1 {
		t.Errorf("%d nodes held the VIP at once", m)
	}
}
