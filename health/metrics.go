package health

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the health checker's Prometheus series. A nil *Metrics is
// valid and records nothing, so Config.Metrics may be left nil.
type Metrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	failures    *prometheus.CounterVec
}

// Values of vipd_backend_health_state. Unknown is -1 rather than 0 so that
// "never checked yet" is distinguishable from "checked and failing", while
// "healthy" stays the only value above zero (sum() counts healthy backends).
const (
	gaugeHealthy   = 1
	gaugeUnhealthy = 0
	gaugeUnknown   = -1
)

// NewMetrics creates the health metrics and registers them with reg. A nil
// reg creates working but unregistered metrics (useful in tests).
// Registering twice with the same reg panics, as with any Prometheus
// collector.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		state: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_backend_health_state",
			Help: "Health of each backend: 1 healthy, 0 unhealthy, -1 unknown (not yet decided).",
		}, []string{"backend"}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_backend_health_transitions_total",
			Help: "Health state changes of each backend, by the state changed to.",
		}, []string{"backend", "to"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vipd_backend_check_duration_seconds",
			Help:    "Duration of active health checks, successful or not.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_backend_check_failures_total",
			Help: "Failed active health checks of each backend (passive dial failures are counted by the proxy).",
		}, []string{"backend"}),
	}
}

// setState publishes a backend's current state on the gauge.
func (m *Metrics) setState(backend string, s State) {
	if m == nil {
		return
	}
	v := float64(gaugeUnknown)
	switch s {
	case StateHealthy:
		v = gaugeHealthy
	case StateUnhealthy:
		v = gaugeUnhealthy
	}
	m.state.WithLabelValues(backend).Set(v)
}

// transition counts one state change and updates the gauge.
func (m *Metrics) transition(backend string, to State) {
	if m == nil {
		return
	}
	m.transitions.WithLabelValues(backend, to.String()).Inc()
	m.setState(backend, to)
}

// check records one active check.
func (m *Metrics) check(backend string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(backend).Observe(d.Seconds())
	if err != nil {
		m.failures.WithLabelValues(backend).Inc()
	}
}
