package health

import (
	"sync"
	"testing"
)

func TestNode(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1, MinHealthy: 2}, "a:1", "b:1", "c:1")
	n := NewNode(h.m)
	ch, cancel := n.Subscribe()
	defer cancel()

	steps := []struct {
		name   string
		do     func()
		signal bool
		want   NodeStatus
	}{
		{"start: listener down, nothing checked", func() {}, false,
			NodeStatus{TotalBackends: 3, Reason: "listener down; 0 of 3 backends healthy, need 2"}},
		{"listener up, no healthy backend", func() { n.SetListenerUp(true) }, true,
			NodeStatus{ListenerUp: true, TotalBackends: 3, Reason: "0 of 3 backends healthy, need 2"}},
		{"listener up again changes nothing", func() { n.SetListenerUp(true) }, false,
			NodeStatus{ListenerUp: true, TotalBackends: 3, Reason: "0 of 3 backends healthy, need 2"}},
		{"all backends healthy", func() { h.first() }, true,
			NodeStatus{Healthy: true, ListenerUp: true, HealthyBackends: 3, TotalBackends: 3, Reason: "listener up, 3 of 3 backends healthy, need 2"}},
		{"one backend fails: still enough", func() { h.m.ReportDialFailure("a:1", errDown) }, true,
			NodeStatus{Healthy: true, ListenerUp: true, HealthyBackends: 2, TotalBackends: 3, Reason: "listener up, 2 of 3 backends healthy, need 2"}},
		{"second backend fails: not enough", func() { h.m.ReportDialFailure("b:1", errDown) }, true,
			NodeStatus{ListenerUp: true, HealthyBackends: 1, TotalBackends: 3, Reason: "1 of 3 backends healthy, need 2"}},
		{"checks pass again", func() { h.next() }, true,
			NodeStatus{Healthy: true, ListenerUp: true, HealthyBackends: 3, TotalBackends: 3, Reason: "listener up, 3 of 3 backends healthy, need 2"}},
		{"check with no change", func() { h.next() }, false,
			NodeStatus{Healthy: true, ListenerUp: true, HealthyBackends: 3, TotalBackends: 3, Reason: "listener up, 3 of 3 backends healthy, need 2"}},
		{"listener down", func() { n.SetListenerUp(false) }, true,
			NodeStatus{HealthyBackends: 3, TotalBackends: 3, Reason: "listener down"}},
	}
	for _, s := range steps {
		s.do()
		var signalled bool
		select {
		case <-ch:
			signalled = true
		default:
		}
		if signalled != s.signal {
			t.Fatalf("%s: signalled = %v, want %v", s.name, signalled, s.signal)
		}
		if got := n.Status(); got != s.want {
			t.Fatalf("%s:\n got %+v\nwant %+v", s.name, got, s.want)
		}
	}

	cancel()
	n.SetListenerUp(true)
	select {
	case <-ch:
		t.Fatal("cancelled subscriber signalled")
	default:
	}
}

func TestNodeMinHealthyBelowOne(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1}, "a:1")
	n := NewNode(h.m) // MinHealthy 0
	n.SetListenerUp(true)
	if s := n.Status(); s.Healthy || s.Reason != "0 of 1 backends healthy, need 1" {
		t.Fatalf("node with no healthy backend: %+v", s)
	}
	h.first()
	if s := n.Status(); !s.Healthy {
		t.Fatalf("node with its backend healthy: %+v", s)
	}
}

// TestNodeConcurrentChanges checks that racing backend changes leave the
// last signalled status equal to the final one (run with -race).
func TestNodeConcurrentChanges(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1, MinHealthy: 1}, "a:1", "b:1", "c:1", "d:1")
	n := NewNode(h.m)
	n.SetListenerUp(true)
	h.first()
	ch, cancel := n.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	for _, addr := range []string{"a:1", "b:1", "c:1", "d:1"} {
		wg.Go(func() { h.m.ReportDialFailure(addr, errDown) })
	}
	wg.Wait()
	<-ch
	want := NodeStatus{ListenerUp: true, TotalBackends: 4, Reason: "0 of 4 backends healthy, need 1"}
	if got := n.Status(); got != want {
		t.Fatalf("after all backends failed: %+v", got)
	}
	n.mu.Lock()
	last := n.last
	n.mu.Unlock()
	if last != want {
		t.Fatalf("last status told to subscribers %+v, want %+v", last, want)
	}
}
