package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds the proxy's Prometheus collectors. NewMetrics registers them once per agent; each frontend's
// Proxy records through its own view (Frontend), which adds a frontend label to every series. A nil *Metrics
// records nothing, so tests and embedders without Prometheus pass nil.
type Metrics struct {
	v        *metricVecs
	frontend string // this view's frontend label; "" for the view NewMetrics returns
}

// metricVecs are the collectors, shared by every view.
type metricVecs struct {
	conns        *prometheus.CounterVec
	active       *prometheus.GaugeVec
	bytes        *prometheus.CounterVec
	dialErrors   *prometheus.CounterVec
	copyErrors   *prometheus.CounterVec
	refused      *prometheus.CounterVec
	connDuration *prometheus.HistogramVec
	dialDuration *prometheus.HistogramVec
	localErrors  *prometheus.CounterVec
	loops        *prometheus.CounterVec
}

// Refusal reasons, the values of the reason label of vipd_proxy_refused_total.
const (
	reasonNoBackend  = "no_backend"
	reasonMaxConns   = "max_conns"
	reasonLocalError = "local_error"
)

// Buckets. A dial on a LAN takes 100 µs to a few ms; a dial timeout is seconds. A proxied connection lives
// from a 10 ms request to a day-long Kubernetes watch.
var (
	dialBuckets = []float64{100e-6, 250e-6, 500e-6, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	connBuckets = []float64{.01, .1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600}
)

// NewMetrics creates the proxy collectors and registers them with reg (nil: not registered). It panics if
// they are already registered with reg, as prometheus.MustRegister does: call it once per agent and hand out
// Frontend views. The returned view records with an empty frontend label, which Prometheus treats as none;
// it creates no series until something happens.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	v := &metricVecs{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_connections_total",
			Help: "Connections proxied to each backend (successful dials).",
		}, []string{"frontend", "backend"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_proxy_connections_active",
			Help: "Connections currently open to each backend.",
		}, []string{"frontend", "backend"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_bytes_total",
			Help: "Bytes moved per backend; upstream is client to backend, downstream backend to client.",
		}, []string{"frontend", "backend", "direction"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_dial_errors_total",
			Help: "Failed connect attempts to each backend (each also counts as a failed health check); local resource errors are not counted here.",
		}, []string{"frontend", "backend"}),
		copyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_copy_errors_total",
			Help: "Connections ended by a socket error (reset, broken pipe) while moving bytes, per direction.",
		}, []string{"frontend", "backend", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_refused_total",
			Help: "Client connections reset at once: no_backend (none healthy or all dials failed), max_conns, or local_error (this node out of fds, buffers, memory or ports).",
		}, []string{"frontend", "reason"}),
		connDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vipd_proxy_connection_duration_seconds",
			Help:    "Lifetime of proxied connections, from accept to the close of both sides.",
			Buckets: connBuckets,
		}, []string{"frontend"}),
		dialDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vipd_backend_dial_duration_seconds",
			Help:    "Time to connect to each backend, successful dials only.",
			Buckets: dialBuckets,
		}, []string{"frontend", "backend"}),
		localErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_local_errors_total",
			Help: "Accepts and dials that failed for a local reason (EMFILE, ENFILE, ENOBUFS, ENOMEM, EADDRNOTAVAIL), by errno; never counted against a backend.",
		}, []string{"frontend", "errno"}),
		loops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_loop_dials_total",
			Help: "Dials refused because the backend is one of this proxy's own listening addresses (a proxy loop).",
		}, []string{"frontend", "backend"}),
	}
	if reg != nil {
		reg.MustRegister(v.conns, v.active, v.bytes, v.dialErrors, v.copyErrors, v.refused, v.connDuration,
			v.dialDuration, v.localErrors, v.loops)
	}
	return &Metrics{v: v}
}

// Frontend returns the view that labels every series with frontend=name: the Metrics a frontend's Proxy takes
// in its Config. Views share NewMetrics' collectors. The view's refusal counters are created at 0, so a
// rate() over them works before the first refusal. A nil Metrics gives nil.
func (m *Metrics) Frontend(name string) *Metrics {
	if m == nil {
		return nil
	}
	f := &Metrics{v: m.v, frontend: name}
	f.init()
	return f
}

// init creates the series that should read 0 before anything happened.
func (m *Metrics) init() {
	for _, r := range []string{reasonNoBackend, reasonMaxConns, reasonLocalError} {
		m.v.refused.WithLabelValues(m.frontend, r)
	}
}

// DeleteSeries deletes every series of this view's frontend. Call it when the frontend is removed, after its
// Serve returned; a Proxy deletes a removed backend's series by itself (CloseBackend).
func (m *Metrics) DeleteSeries() {
	if m == nil {
		return
	}
	l := prometheus.Labels{"frontend": m.frontend}
	for _, c := range m.v.collectors() {
		c.DeletePartialMatch(l)
	}
}

// deleteBackend deletes one backend's series.
func (m *Metrics) deleteBackend(addr string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"frontend": m.frontend, "backend": addr}
	for _, c := range []partialDeleter{m.v.conns, m.v.active, m.v.bytes, m.v.dialErrors, m.v.copyErrors, m.v.dialDuration, m.v.loops} {
		c.DeletePartialMatch(l)
	}
}

// partialDeleter is what every *prometheus.XxxVec offers.
type partialDeleter interface {
	DeletePartialMatch(labels prometheus.Labels) int
}

func (v *metricVecs) collectors() []partialDeleter {
	return []partialDeleter{v.conns, v.active, v.bytes, v.dialErrors, v.copyErrors, v.refused, v.connDuration,
		v.dialDuration, v.localErrors, v.loops}
}

// backendMetrics are one backend's resolved children, looked up once per backend instead of per
// connection. The zero value (nil Metrics) records nothing.
type backendMetrics struct {
	conns, dialErrors      prometheus.Counter
	bytesUp, bytesDown     prometheus.Counter
	copyErrUp, copyErrDown prometheus.Counter
	loops                  prometheus.Counter
	active                 prometheus.Gauge
	dialDuration           prometheus.Observer
}

func (m *Metrics) forBackend(addr string) backendMetrics {
	if m == nil {
		return backendMetrics{}
	}
	f := m.frontend
	return backendMetrics{
		conns:        m.v.conns.WithLabelValues(f, addr),
		dialErrors:   m.v.dialErrors.WithLabelValues(f, addr),
		bytesUp:      m.v.bytes.WithLabelValues(f, addr, "upstream"),
		bytesDown:    m.v.bytes.WithLabelValues(f, addr, "downstream"),
		copyErrUp:    m.v.copyErrors.WithLabelValues(f, addr, "upstream"),
		copyErrDown:  m.v.copyErrors.WithLabelValues(f, addr, "downstream"),
		loops:        m.v.loops.WithLabelValues(f, addr),
		active:       m.v.active.WithLabelValues(f, addr),
		dialDuration: m.v.dialDuration.WithLabelValues(f, addr),
	}
}

func (m *Metrics) refusedInc(reason string) {
	if m != nil {
		m.v.refused.WithLabelValues(m.frontend, reason).Inc()
	}
}

func (m *Metrics) localError(errno string) {
	if m != nil {
		m.v.localErrors.WithLabelValues(m.frontend, errno).Inc()
	}
}

// connDuration returns the observer of connection lifetimes, nil without metrics.
func (m *Metrics) connDuration() prometheus.Observer {
	if m == nil {
		return nil
	}
	return m.v.connDuration.WithLabelValues(m.frontend)
}

func inc(c prometheus.Counter) {
	if c != nil {
		c.Inc()
	}
}

func add(c prometheus.Counter, v uint64) {
	if c != nil && v > 0 {
		c.Add(float64(v))
	}
}

func gaugeAdd(g prometheus.Gauge, v float64) {
	if g != nil {
		g.Add(v)
	}
}

func observe(o prometheus.Observer, d time.Duration) {
	if o != nil {
		o.Observe(d.Seconds())
	}
}
