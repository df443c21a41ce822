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

	// The responder's counters, resolved per verdict up front: they are bumped for every frame that
	// reaches userspace, so no label lookup on that path.
	arpFrames   [numVerdicts]prometheus.Counter
	ndpMessages [numVerdicts]prometheus.Counter
	restarts    *prometheus.CounterVec
}

// The verdicts each protocol can reach, pre-initialised so that dashboards see zeros, not gaps.
var (
	arpVerdicts = []Verdict{Reply, DropMalformed, DropFromSelf, DropBadSender, DropConflict, DropNotRequest,
		DropNotOurVIP, DropWrongDestination, DropFenced, DropRateLimited, DropSendFailed}
	ndpVerdicts = []Verdict{Reply, DropMalformed, DropBadHopLimit, DropFromSelf, DropBadSender, DropNotRequest,
		DropNotOurVIP, DropFenced, DropRateLimited, DropSendFailed}
)

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
	arp := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipd_arp_frames_total",
		Help: "ARP frames that reached the responder, by result: answered, or the reason for dropping it.",
	}, []string{"result"})
	ndp := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipd_ndp_messages_total",
		Help: "Neighbour discovery messages that reached the responder, by result: answered, or the reason for dropping it.",
	}, []string{"result"})
	for _, v := range arpVerdicts {
		m.arpFrames[v] = arp.WithLabelValues(v.String())
	}
	for _, v := range ndpVerdicts {
		m.ndpMessages[v] = ndp.WithLabelValues(v.String())
	}
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vipd_arp_responder_restarts_total",
		Help: "ARP/NDP responder sockets reopened after a socket error, by protocol (arp, ndp).",
	}, []string{"protocol"})
	m.restarts.WithLabelValues("arp")
	m.restarts.WithLabelValues("ndp")
	if reg != nil {
		reg.MustRegister(m.held, m.transitions, m.garpSent, m.lastAcquire, m.lastRelease, m.hookFailures,
			arp, ndp, m.restarts)
	}
	return m
}

func (m *Metrics) arpFrame(v Verdict) {
	if m == nil || v >= numVerdicts || m.arpFrames[v] == nil {
		return
	}
	m.arpFrames[v].Inc()
}

func (m *Metrics) ndpMessage(v Verdict) {
	if m == nil || v >= numVerdicts || m.ndpMessages[v] == nil {
		return
	}
	m.ndpMessages[v].Inc()
}

func (m *Metrics) responderRestarted(protocol string) {
	if m == nil {
		return
	}
	m.restarts.WithLabelValues(protocol).Inc()
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
