package health

import (
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// single returns the one frontend of s, failing otherwise.
func single(t *testing.T, s NodeStatus) FrontendStatus {
	t.Helper()
	if len(s.Frontends) != 1 {
		t.Fatalf("want one frontend, got %+v", s)
	}
	return s.Frontends[0]
}

func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestNode(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1, MinHealthy: 2}, "a:1", "b:1", "c:1")
	n := NewNode()
	n.SetFrontend("api", h.m)
	ch, cancel := n.Subscribe()
	defer cancel()

	// want is the frontend's status; the node mirrors it (one frontend).
	fe := func(healthy, up bool, hb int, reason string) FrontendStatus {
		return FrontendStatus{Name: "api", Healthy: healthy, ListenerUp: up, HealthyBackends: hb, TotalBackends: 3, MinHealthy: 2, Reason: reason}
	}
	steps := []struct {
		name   string
		do     func()
		signal bool
		want   FrontendStatus
	}{
		{"start: listener down, nothing checked", func() {}, false,
			fe(false, false, 0, "listener down; 0 of 3 backends healthy, need 2")},
		{"listener up, no healthy backend", func() { n.SetListenerUp("api", true) }, true,
			fe(false, true, 0, "0 of 3 backends healthy, need 2")},
		{"listener up again changes nothing", func() { n.SetListenerUp("api", true) }, false,
			fe(false, true, 0, "0 of 3 backends healthy, need 2")},
		{"all backends healthy", func() { h.first() }, true,
			fe(true, true, 3, "listener up, 3 of 3 backends healthy, need 2")},
		{"one backend fails: still enough", func() { h.m.ReportDialFailure("a:1", errDown) }, true,
			fe(true, true, 2, "listener up, 2 of 3 backends healthy, need 2")},
		{"second backend fails: not enough", func() { h.m.ReportDialFailure("b:1", errDown) }, true,
			fe(false, true, 1, "1 of 3 backends healthy, need 2")},
		{"checks pass again", func() { h.next() }, true,
			fe(true, true, 3, "listener up, 3 of 3 backends healthy, need 2")},
		{"check with no change", func() { h.next() }, false,
			fe(true, true, 3, "listener up, 3 of 3 backends healthy, need 2")},
		{"listener down", func() { n.SetListenerUp("api", false) }, true,
			fe(false, false, 3, "listener down")},
	}
	for _, s := range steps {
		s.do()
		if got := pending(ch); got != s.signal {
			t.Fatalf("%s: signalled = %v, want %v", s.name, got, s.signal)
		}
		st := n.Status()
		if got := single(t, st); got != s.want {
			t.Fatalf("%s:\n got %+v\nwant %+v", s.name, got, s.want)
		}
		healthy := 0
		if s.want.Healthy {
			healthy = 1
		}
		if st.Healthy != s.want.Healthy || st.ListenerUp != s.want.ListenerUp || st.HealthyFrontends != healthy ||
			st.TotalFrontends != 1 || st.HealthyBackends != s.want.HealthyBackends || st.TotalBackends != 3 {
			t.Fatalf("%s: node status %+v does not mirror its one frontend", s.name, st)
		}
		if want := "api: " + s.want.Reason; !strings.HasSuffix(st.Reason, want) {
			t.Fatalf("%s: node reason %q, want it to end in %q", s.name, st.Reason, want)
		}
	}

	cancel()
	n.SetListenerUp("api", true)
	if pending(ch) {
		t.Fatal("cancelled subscriber signalled")
	}
}

func TestNodeMinHealthyBelowOne(t *testing.T) {
	h := startMonitor(t, Config{Rise: 1, Fall: 1}, "a:1")
	n := NewNode()
	n.SetFrontend("api", h.m) // MinHealthy 0
	n.SetListenerUp("api", true)
	if s := single(t, n.Status()); s.Healthy || s.Reason != "0 of 1 backends healthy, need 1" {
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
	n := NewNode()
	n.SetFrontend("api", h.m)
	n.SetListenerUp("api", true)
	h.first()
	ch, cancel := n.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	for _, addr := range []string{"a:1", "b:1", "c:1", "d:1"} {
		wg.Go(func() { h.m.ReportDialFailure(addr, errDown) })
	}
	wg.Wait()
	<-ch
	want := FrontendStatus{Name: "api", ListenerUp: true, TotalBackends: 4, MinHealthy: 1, Reason: "0 of 4 backends healthy, need 1"}
	got := n.Status()
	if single(t, got) != want || got.Healthy {
		t.Fatalf("after all backends failed: %+v", got)
	}
	n.mu.Lock()
	last := n.last
	n.mu.Unlock()
	if !last.Equal(got) {
		t.Fatalf("last status told to subscribers %+v, want %+v", last, got)
	}
}

// TestNodeFrontends follows two frontends through a table of changes: adding, a listener going down,
// removing one, replacing a Monitor. Each step says the node's health, its rank and whether subscribers
// were signalled.
func TestNodeFrontends(t *testing.T) {
	api := startMonitor(t, Config{Rise: 1, Fall: 1}, "a:1", "b:1")
	konn := startMonitor(t, Config{Rise: 1, Fall: 1}, "k:1")
	api.first()
	konn.first()
	replacement := startMonitor(t, Config{Rise: 1, Fall: 1}, "r:1") // never checked: 0 of 1 healthy

	reg := prometheus.NewPedanticRegistry()
	metrics := NewMetrics(reg)
	n := NewNode(WithMetrics(metrics))
	ch, cancel := n.Subscribe()
	defer cancel()

	steps := []struct {
		name       string
		do         func()
		signal     bool
		healthy    bool
		healthyFEs int
		totalFEs   int
		reason     string
	}{
		{"no frontend: nothing to serve", func() {}, false, false, 0, 0,
			"no frontend: nothing to serve"},
		{"api added, listener down", func() { n.SetFrontend("api", api.m) }, true, false, 0, 1,
			"0 of 1 frontends healthy | api: listener down"},
		{"unknown frontend's listener is ignored", func() { n.SetListenerUp("nope", true) }, false, false, 0, 1,
			"0 of 1 frontends healthy | api: listener down"},
		{"api up", func() { n.SetListenerUp("api", true) }, true, true, 1, 1,
			"1 of 1 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1"},
		{"konnectivity added, down: node unhealthy", func() { n.SetFrontend("konnectivity", konn.m) }, true, false, 1, 2,
			"1 of 2 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1 | konnectivity: listener down"},
		{"konnectivity up: all healthy", func() { n.SetListenerUp("konnectivity", true) }, true, true, 2, 2,
			"2 of 2 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1 | konnectivity: listener up, 1 of 1 backends healthy, need 1"},
		{"same monitor again: no change", func() { n.SetFrontend("api", api.m) }, false, true, 2, 2,
			"2 of 2 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1 | konnectivity: listener up, 1 of 1 backends healthy, need 1"},
		{"konnectivity's monitor replaced: listener kept", func() { n.SetFrontend("konnectivity", replacement.m) }, true, false, 1, 2,
			"1 of 2 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1 | konnectivity: 0 of 1 backends healthy, need 1"},
		{"old monitor's changes are no longer followed", func() { konn.m.ReportDialFailure("k:1", errDown) }, false, false, 1, 2,
			"1 of 2 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1 | konnectivity: 0 of 1 backends healthy, need 1"},
		{"konnectivity removed", func() { n.RemoveFrontend("konnectivity") }, true, true, 1, 1,
			"1 of 1 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1"},
		{"removing it again is a no-op", func() { n.RemoveFrontend("konnectivity") }, false, true, 1, 1,
			"1 of 1 frontends healthy | api: listener up, 2 of 2 backends healthy, need 1"},
		{"api's backend drained: still enough", func() {
			if err := api.m.SetDrain("a:1", true); err != nil {
				t.Fatal(err)
			}
		}, true, true, 1, 1,
			"1 of 1 frontends healthy | api: listener up, 1 of 2 backends healthy and not drained (1 drained), need 1"},
		{"second drained: nothing to serve", func() {
			if err := api.m.SetDrain("b:1", true); err != nil {
				t.Fatal(err)
			}
		}, true, false, 0, 1,
			"0 of 1 frontends healthy | api: 0 of 2 backends healthy and not drained (2 drained), need 1"},
	}
	for _, s := range steps {
		s.do()
		if got := pending(ch); got != s.signal {
			t.Fatalf("%s: signalled = %v, want %v", s.name, got, s.signal)
		}
		st := n.Status()
		if st.Healthy != s.healthy || st.HealthyFrontends != s.healthyFEs || st.TotalFrontends != s.totalFEs || st.Reason != s.reason {
			t.Fatalf("%s:\n got %+v\nwant healthy=%v %d/%d frontends, reason %q", s.name, st, s.healthy, s.healthyFEs, s.totalFEs, s.reason)
		}
		wantNode := 0.0
		if s.healthy {
			wantNode = 1
		}
		if got := scalar(t, reg, "vipd_node_healthy{}"); got != wantNode {
			t.Fatalf("%s: vipd_node_healthy = %v, want %v", s.name, got, wantNode)
		}
		for _, f := range st.Frontends {
			want := 0.0
			if f.Healthy {
				want = 1
			}
			if got := scalar(t, reg, `vipd_frontend_healthy{frontend="`+f.Name+`"}`); got != want {
				t.Fatalf("%s: vipd_frontend_healthy{%s} = %v, want %v", s.name, f.Name, got, want)
			}
		}
	}
	if _, ok := lookup(t, reg, `vipd_frontend_healthy{frontend="konnectivity"}`); ok {
		t.Fatal("a removed frontend's vipd_frontend_healthy series is still exported")
	}
}
