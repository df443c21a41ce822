package health

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather flattens reg's metrics into `name{label="v",...}` -> value; a
// histogram appears as name_count and name_sum.
func gather(t *testing.T, reg *prometheus.Registry) []map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]float64
	for _, mf := range mfs {
		m := map[string]float64{}
		for _, metric := range mf.GetMetric() {
			labels := labelString(metric.GetLabel())
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				m[mf.GetName()+labels] = metric.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				m[mf.GetName()+labels] = metric.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				m[mf.GetName()+"_count"+labels] = float64(metric.GetHistogram().GetSampleCount())
				m[mf.GetName()+"_sum"+labels] = metric.GetHistogram().GetSampleSum()
			}
		}
		out = append(out, m)
	}
	return out
}

func labelString(pairs []*dto.LabelPair) string {
	var parts []string
	for _, p := range pairs {
		parts = append(parts, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// gaugeValue returns the value of name{backend=backend}, failing if absent.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name, backend string) float64 {
	t.Helper()
	key := fmt.Sprintf("%s{backend=%q}", name, backend)
	for _, m := range gather(t, reg) {
		if v, ok := m[key]; ok {
			return v
		}
	}
	t.Fatalf("metric %s not found", key)
	return 0
}
