package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vipd/vipd/internal/testutil"
)

// TestMetricsFrontendViews runs two proxies on one registration: every series carries its frontend, the
// duration histograms count, CloseBackend deletes a removed backend's series after the grace and
// DeleteSeries a removed frontend's.
func TestMetricsFrontendViews(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	metrics := NewMetrics(reg)
	a, b := startBackend(t, echo), startBackend(t, echo)
	api := startProxy(t, Config{Metrics: metrics.Frontend("api")}, newFakeBackends(a.addr, b.addr))
	konn := startProxy(t, Config{Metrics: metrics.Frontend("konn")}, newFakeBackends(b.addr))
	for range 2 {
		for _, tp := range []*testProxy{api, konn} {
			c := dial(t, tp.addr)
			if r, err := roundTrip(c, "abc"); err != nil || r != "abc" {
				t.Fatalf("echo %q, %v", r, err)
			}
			_ = c.Close()
		}
	}
	testutil.WaitFor(t, 2*time.Second, "connections released", func() bool {
		return api.p.Counters().Active == 0 && konn.p.Counters().Active == 0
	})
	got := flatten(t, reg)
	want := map[string]float64{
		fmt.Sprintf(`vipd_proxy_connections_total{backend=%q,frontend="api"}`, a.addr):                 1,
		fmt.Sprintf(`vipd_proxy_connections_total{backend=%q,frontend="api"}`, b.addr):                 1,
		fmt.Sprintf(`vipd_proxy_connections_total{backend=%q,frontend="konn"}`, b.addr):                2,
		fmt.Sprintf(`vipd_proxy_bytes_total{backend=%q,direction="upstream",frontend="konn"}`, b.addr): 6,
		fmt.Sprintf(`vipd_backend_dial_duration_seconds_count{backend=%q,frontend="konn"}`, b.addr):    2,
		`vipd_proxy_connection_duration_seconds_count{frontend="api"}`:                                 2,
		`vipd_proxy_connection_duration_seconds_count{frontend="konn"}`:                                2,
		`vipd_proxy_refused_total{frontend="konn",reason="max_conns"}`:                                 0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if s := got[`vipd_proxy_connection_duration_seconds_sum{frontend="api"}`]; s <= 0 || s > 10 {
		t.Errorf("connection duration sum %v s for two short connections", s)
	}

	api.p.CloseBackend(a.addr, 10*time.Millisecond)
	testutil.WaitFor(t, 5*time.Second, "the removed backend's series to go", func() bool {
		for k := range flatten(t, reg) {
			if strings.Contains(k, a.addr) {
				return false
			}
		}
		return true
	})
	metrics.Frontend("konn").DeleteSeries()
	for k := range flatten(t, reg) {
		if strings.Contains(k, `frontend="konn"`) {
			t.Errorf("series of the removed frontend still exported: %s", k)
		}
	}
	if _, ok := flatten(t, reg)[fmt.Sprintf(`vipd_proxy_connections_total{backend=%q,frontend="api"}`, b.addr)]; !ok {
		t.Error("deleting one frontend's series removed another's")
	}
	var nilMetrics *Metrics
	if nilMetrics.Frontend("x") != nil {
		t.Fatal("a nil Metrics' view is not nil")
	}
	nilMetrics.DeleteSeries()
	nilMetrics.deleteBackend("x")
	nilMetrics.localError("EMFILE")
	nilMetrics.refusedInc(reasonLocalError)
	observe(nilMetrics.connDuration(), time.Second)
}
