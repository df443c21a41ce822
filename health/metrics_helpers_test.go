package health

import (
	"fmt"
	"regexp"
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

// labelString renders the labels sorted; a label with an empty value is left out, since Prometheus treats
// it as absent (the view NewMetrics returns records frontend="").
func labelString(pairs []*dto.LabelPair) string {
	var parts []string
	for _, p := range pairs {
		if p.GetValue() == "" {
			continue
		}
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

// lookup returns the value of the flattened key (as gather spells it) and whether it is exported.
func lookup(t *testing.T, reg *prometheus.Registry, key string) (float64, bool) {
	t.Helper()
	for _, m := range gather(t, reg) {
		if v, ok := m[key]; ok {
			return v, true
		}
	}
	return 0, false
}

// scalar returns the value of the flattened key, failing if it is not exported.
func scalar(t *testing.T, reg *prometheus.Registry, key string) float64 {
	t.Helper()
	v, ok := lookup(t, reg, key)
	if !ok {
		t.Fatalf("metric %s not found", key)
	}
	return v
}

// regexpGone matches any series of the backend gone:1.
var regexpGone = regexp.MustCompile(`backend="gone:1"`)

// gaugeKey returns the value of the flattened key, failing if absent.
func gaugeKey(t *testing.T, reg *prometheus.Registry, key string) float64 {
	t.Helper()
	return scalar(t, reg, key)
}

// regexpKonn matches any series of the frontend konn.
var regexpKonn = regexp.MustCompile(`frontend="konn"`)
