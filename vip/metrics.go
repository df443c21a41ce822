package vip

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the VIP's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	held         prometheus.Gauge
	transitions  *prometheus.CounterVec
	garpSent     prometheus.Counter
	lastAcquire  prometheus.Gauge
	lastRelease  prometheus.Gauge
	hookFailures *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil reg: created but not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipd_vip_held", Help: "1 while this node holds the VIP, else 0.",
		}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_vip_transitions_total", Help: "VIP acquisitions and releases by this node.",
		}, []string{"event"}),
		garpSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vipd_garp_sent_total", Help: "Gratuitous ARP / unsolicited NA announcements sent.",
		}),
		lastAcquire: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipd_vip_last_acquire_timestamp_seconds", Help: "Unix time of the last VIP acquisition.",
		}),
		lastRelease: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vipd_vip_last_release_timestamp_seconds", Help: "Unix time of the last VIP release.",
		}),
		hookFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_vip_hook_failures_total", Help: "Failed or timed-out -on-acquire/-on-release hooks.",
		}, []string{"hook"}),
	}
	m.transitions.WithLabelValues("acquire")
	m.transitions.WithLabelValues("release")
	m.hookFailures.WithLabelValues("acquire")
	m.hookFailures.WithLabelValues("release")
	if reg != nil {
		reg.MustRegister(m.held, m.transitions, m.garpSent, m.lastAcquire, m.lastRelease, m.hookFailures)
	}
	return m
}

func (m *Metrics) acquired(now time.Time) {
	if m == nil {
		return
	}
	m.held.Set(1)
	m.transitions.WithLabelValues("acquire").Inc()
	m.lastAcquire.Set(float64(now.UnixNano()) / 1e9)
}

func (m *Metrics) released(now time.Time) {
	if m == nil {
		return
	}
	m.held.Set(0)
	m.transitions.WithLabelValues("release").Inc()
	m.lastRelease.Set(float64(now.UnixNano()) / 1e9)
}

func (m *Metrics) garp() {
	if m == nil {
		return
	}
	m.garpSent.Inc()
}

func (m *Metrics) hookFailed(hook string) {
	if m == nil {
		return
	}
	m.hookFailures.WithLabelValues(hook).Inc()
}
