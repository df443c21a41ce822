package viptest_test

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/vipd/vipd/vip/viptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a testing.TB that records Errorf instead of failing, to show the invariant check fires.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

var vip = netip.MustParsePrefix("10.0.0.50/24")

func TestFakeNetworkFailsOnTwoHolders(t *testing.T) {
	rec := &recorder{TB: t}
	n := viptest.NewFakeNetwork(rec)
	a, b := n.Kernel("a"), n.Kernel("b")
	if err := a.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if err := a.AddAddr(vip); err != nil { // idempotent: still one holder
		t.Fatal(err)
	}
	if len(rec.errors) != 0 || n.MaxHolders(vip.Addr()) != 1 {
		t.Fatalf("one holder flagged: %v", rec.errors)
	}
	if err := b.AddAddr(vip); err != nil {
		t.Fatal(err)
	}
	if len(rec.errors) != 1 || n.MaxHolders(vip.Addr()) != 2 {
		t.Fatalf("two holders not flagged: errors %v, max %d", rec.errors, n.MaxHolders(vip.Addr()))
	}
	if got := n.Holders(vip.Addr()); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("Holders = %v", got)
	}
}

func TestFakeNetworkFailsOnTwoResponders(t *testing.T) {
	rec := &recorder{TB: t}
	n := viptest.NewFakeNetwork(rec)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b"} {
		k := n.Kernel(name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = k.Answer(ctx, []netip.Addr{vip.Addr()}, func() bool { return true })
		}()
		for !k.Answering() {
			runtime.Gosched() // until the goroutine has registered
		}
	}
	if len(n.Responders(vip.Addr())) != 2 || len(rec.errors) == 0 {
		t.Fatalf("two responders not flagged: %v", rec.errors)
	}
	cancel()
	wg.Wait()
	if got := n.Responders(vip.Addr()); len(got) != 0 {
		t.Fatalf("responders after stop: %v", got)
	}
}

func TestFakeNetworkOwnerFollowsAnnouncements(t *testing.T) {
	n := viptest.NewFakeNetwork(t)
	a, b := n.Kernel("a"), n.Kernel("b")
	_ = a.Announce(vip.Addr())
	if n.Owner(vip.Addr()) != "a" {
		t.Fatal("owner not a")
	}
	_ = b.Announce(vip.Addr())
	if n.Owner(vip.Addr()) != "b" || b.Announces(vip.Addr()) != 1 {
		t.Fatal("owner did not follow b's announcement")
	}
	if n.Kernel("a") != a {
		t.Fatal("Kernel returned a new kernel for an existing node")
	}
}
