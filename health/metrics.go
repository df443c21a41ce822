package health

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the health checker's Prometheus series. NewMetrics registers them once per agent; each
// frontend's Monitor records through its own view (Frontend), which labels every series with the frontend's
// name, so several Monitors share one registration. A nil *Metrics is valid and records nothing, so
// Config.Metrics may be left nil.
type Metrics struct {
	v        *metricVecs
	frontend string // the frontend label of this view; "" for the view NewMetrics returns
}

// metricVecs are the collectors, shared by every view.
type metricVecs struct {
	state, drained  *prometheus.GaugeVec
	transitions     *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	failures        *prometheus.CounterVec
	localErrors     *prometheus.CounterVec
	nodeHealthy     prometheus.Gauge
	frontendHealthy *prometheus.GaugeVec
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
// collector: call it once per agent and hand out Frontend views.
//
// The returned view records with an empty frontend label, which Prometheus
// treats as no label at all.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{v: &metricVecs{
		state: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_backend_health_state",
			Help: "Health of each backend: 1 healthy, 0 unhealthy, -1 unknown (not yet decided).",
		}, []string{"frontend", "backend"}),
		drained: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_backend_drained",
			Help: "1 while an operator has drained the backend (checked, but no new connections).",
		}, []string{"frontend", "backend"}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_backend_health_transitions_total",
			Help: "Health state changes of each backend, by the state changed to.",
		}, []string{"frontend", "backend", "to"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vipd_backend_check_duration_seconds",
			Help:    "Duration of active health checks, successful or not.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"frontend", "backend"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_backend_check_failures_total",
			Help: "Failed active health checks of each backend (passive dial failures are counted by the proxy).",
		}, []string{"frontend", "backend"}),
		localErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_backend_check_local_errors_total",
			Help: "Active checks that failed for a local reason (out of fds, buffers, memory or local ports), by errno; not counted against the backend.",
		}, []string{"frontend", "errno"}),
		nodeHealthy: f.NewGauge(prometheus.GaugeOpts{
			Name: "vipd_node_healthy",
			Help: "1 while this node is fit to hold the VIP: every frontend's listener up with enough healthy backends.",
		}),
		frontendHealthy: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_frontend_healthy",
			Help: "1 while the frontend's listener is up and it has enough healthy backends.",
		}, []string{"frontend"}),
	}}
}

// Frontend returns the view that labels every series with frontend=name: the Metrics a frontend's Monitor
// takes in its Config. Views share NewMetrics' collectors. A nil Metrics gives nil.
func (m *Metrics) Frontend(name string) *Metrics {
	if m == nil {
		return nil
	}
	return &Metrics{v: m.v, frontend: name}
}

// DeleteSeries deletes every backend series of this view's frontend (not the node's). Call it when the
// frontend is removed, after its Monitor's Run has returned; a Monitor deletes the series of a backend that
// Update removes by itself.
func (m *Metrics) DeleteSeries() {
	if m == nil {
		return
	}
	l := prometheus.Labels{"frontend": m.frontend}
	m.v.state.DeletePartialMatch(l)
	m.v.drained.DeletePartialMatch(l)
	m.v.transitions.DeletePartialMatch(l)
	m.v.duration.DeletePartialMatch(l)
	m.v.failures.DeletePartialMatch(l)
	m.v.localErrors.DeletePartialMatch(l)
}

// deleteBackend deletes one backend's series.
func (m *Metrics) deleteBackend(backend string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"frontend": m.frontend, "backend": backend}
	m.v.state.DeletePartialMatch(l)
	m.v.drained.DeletePartialMatch(l)
	m.v.transitions.DeletePartialMatch(l)
	m.v.duration.DeletePartialMatch(l)
	m.v.failures.DeletePartialMatch(l)
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
	m.v.state.WithLabelValues(m.frontend, backend).Set(v)
}

// setDrained publishes a backend's drain flag.
func (m *Metrics) setDrained(backend string, drained bool) {
	if m == nil {
		return
	}
	m.v.drained.WithLabelValues(m.frontend, backend).Set(b2f(drained))
}

// transition counts one state change and updates the gauge.
func (m *Metrics) transition(backend string, to State) {
	if m == nil {
		return
	}
	m.v.transitions.WithLabelValues(m.frontend, backend, to.String()).Inc()
	m.setState(backend, to)
}

// check records one active check.
func (m *Metrics) check(backend string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.v.duration.WithLabelValues(m.frontend, backend).Observe(d.Seconds())
	if err != nil {
		m.v.failures.WithLabelValues(m.frontend, backend).Inc()
	}
}

// localError counts one check that failed for a local reason.
func (m *Metrics) localError(errno string) {
	if m == nil {
		return
	}
	m.v.localErrors.WithLabelValues(m.frontend, errno).Inc()
}

// setNode publishes the node's health and that of its frontends.
func (m *Metrics) setNode(s NodeStatus) {
	if m == nil {
		return
	}
	m.v.nodeHealthy.Set(b2f(s.Healthy))
	for _, f := range s.Frontends {
		m.v.frontendHealthy.WithLabelValues(f.Name).Set(b2f(f.Healthy))
	}
}

// deleteFrontend deletes a removed frontend's vipd_frontend_healthy series.
func (m *Metrics) deleteFrontend(name string) {
	if m == nil {
		return
	}
	m.v.frontendHealthy.DeleteLabelValues(name)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
