package proxy

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// flatten gathers reg into `name{label="v",...}` -> value (labels sorted, empty values left out as Prometheus
// treats them as absent); a histogram appears as name_count and name_sum.
func flatten(t testing.TB, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				if l.GetValue() != "" {
					parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
			}
			sort.Strings(parts)
			labels := "{" + strings.Join(parts, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[mf.GetName()+labels] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[mf.GetName()+labels] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[mf.GetName()+"_count"+labels] = float64(m.GetHistogram().GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// metricValue returns one flattened series, failing if it is not exported.
func metricValue(t testing.TB, reg *prometheus.Registry, key string) float64 {
	t.Helper()
	v, ok := flatten(t, reg)[key]
	if !ok {
		t.Fatalf("metric %s not exported", key)
	}
	return v
}
