package health

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMonitorSetDrain(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h := startMonitor(t, Config{Rise: 1, Fall: 1, Metrics: NewMetrics(reg).Frontend("api")}, "a:1", "b:1")
	h.first()
	ch, cancel := h.m.Subscribe()
	defer cancel()

	steps := []struct {
		name    string
		addr    string
		drained bool
		err     error
		signal  bool
		healthy []string
	}{
		{"drain a", "a:1", true, nil, true, []string{"b:1"}},
		{"drain a again: no-op", "a:1", true, nil, false, []string{"b:1"}},
		{"unknown backend", "c:1", true, ErrUnknownBackend, false, []string{"b:1"}},
		{"drain b too: nothing serves", "b:1", true, nil, true, nil},
		{"enable a", "a:1", false, nil, true, []string{"a:1"}},
		{"enable b", "b:1", false, nil, true, []string{"a:1", "b:1"}},
	}
	for _, s := range steps {
		err := h.m.SetDrain(s.addr, s.drained)
		if !errors.Is(err, s.err) {
			t.Fatalf("%s: SetDrain error %v, want %v", s.name, err, s.err)
		}
		if got := pending(ch); got != s.signal {
			t.Fatalf("%s: signalled = %v, want %v", s.name, got, s.signal)
		}
		h.wantHealthy(s.healthy...)
	}

	// A drained backend is still checked, keeps its state and shows as drained.
	if err := h.m.SetDrain("a:1", true); err != nil {
		t.Fatal(err)
	}
	calls := h.checker.Calls("a:1")
	h.checker.setDown("a:1", true)
	h.next()
	s := h.status("a:1")
	if h.checker.Calls("a:1") != calls+1 || s.State != StateUnhealthy || !s.Drained {
		t.Fatalf("drained backend after a failed check: %+v, %d checks (was %d)", s, h.checker.Calls("a:1"), calls)
	}
	if got := gaugeKey(t, reg, `vipd_backend_drained{backend="a:1",frontend="api"}`); got != 1 {
		t.Fatalf("vipd_backend_drained of a drained backend = %v", got)
	}
	if got := gaugeKey(t, reg, `vipd_backend_drained{backend="b:1",frontend="api"}`); got != 0 {
		t.Fatalf("vipd_backend_drained of a serving backend = %v", got)
	}
}

// TestMetricsFrontendViews runs two Monitors on one registration: each frontend's series carry its label,
// Update deletes a removed backend's series and DeleteSeries a removed frontend's.
func TestMetricsFrontendViews(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	metrics := NewMetrics(reg)
	api := startMonitor(t, Config{Rise: 1, Fall: 1, Metrics: metrics.Frontend("api")}, "a:1", "shared:1")
	konn := startMonitor(t, Config{Rise: 1, Fall: 1, Metrics: metrics.Frontend("konn")}, "shared:1")
	api.first()
	konn.checker.setDown("shared:1", true)
	konn.first()
	want := map[string]float64{
		`vipd_backend_health_state{backend="a:1",frontend="api"}`:                                  1,
		`vipd_backend_health_state{backend="shared:1",frontend="api"}`:                             1,
		`vipd_backend_health_state{backend="shared:1",frontend="konn"}`:                            0,
		`vipd_backend_check_failures_total{backend="shared:1",frontend="konn"}`:                    1,
		`vipd_backend_health_transitions_total{backend="shared:1",frontend="konn",to="unhealthy"}`: 1,
	}
	for k, v := range want {
		if got := scalar(t, reg, k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	if err := api.m.Update(api.config(), BackendList("a:1")); err != nil {
		t.Fatal(err)
	}
	if _, ok := lookup(t, reg, `vipd_backend_health_state{backend="shared:1",frontend="api"}`); ok {
		t.Error("removed backend's series still exported")
	}
	if _, ok := lookup(t, reg, `vipd_backend_health_state{backend="shared:1",frontend="konn"}`); !ok {
		t.Error("removing a backend from one frontend deleted another frontend's series")
	}
	metrics.Frontend("konn").DeleteSeries()
	for _, m := range gather(t, reg) {
		for k := range m {
			if regexpKonn.MatchString(k) {
				t.Errorf("series of the removed frontend still exported: %s", k)
			}
		}
	}
	if got := scalar(t, reg, `vipd_backend_health_state{backend="a:1",frontend="api"}`); got != 1 {
		t.Errorf("DeleteSeries of one frontend touched another: %v", got)
	}
	var nilMetrics *Metrics
	if nilMetrics.Frontend("x") != nil {
		t.Fatal("a nil Metrics' view is not nil")
	}
	nilMetrics.DeleteSeries()
	nilMetrics.localError("EMFILE")
	nilMetrics.setDrained("x", true)
	nilMetrics.setNode(NodeStatus{})
	nilMetrics.deleteFrontend("x")
	nilMetrics.deleteBackend("x")
}
