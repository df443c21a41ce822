package proxy

import "github.com/prometheus/client_golang/prometheus"

// Metrics holds the proxy's Prometheus collectors. A nil *Metrics records nothing, so tests and embedders
// without Prometheus pass nil.
type Metrics struct {
	conns      *prometheus.CounterVec
	active     *prometheus.GaugeVec
	bytes      *prometheus.CounterVec
	dialErrors *prometheus.CounterVec
	copyErrors *prometheus.CounterVec
	refused    *prometheus.CounterVec
}

// Refusal reasons, the values of the reason label of vipd_proxy_refused_total.
const (
	reasonNoBackend = "no_backend"
	reasonMaxConns  = "max_conns"
)

// NewMetrics creates the proxy collectors and registers them with reg (nil: not registered). It panics if
// they are already registered with reg, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_connections_total",
			Help: "Connections proxied to each backend (successful dials).",
		}, []string{"backend"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vipd_proxy_connections_active",
			Help: "Connections currently open to each backend.",
		}, []string{"backend"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_bytes_total",
			Help: "Bytes moved per backend; upstream is client to backend, downstream backend to client.",
		}, []string{"backend", "direction"}),
		dialErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_dial_errors_total",
			Help: "Failed connect attempts to each backend (each also counts as a failed health check).",
		}, []string{"backend"}),
		copyErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_copy_errors_total",
			Help: "Connections ended by a socket error (reset, broken pipe) while moving bytes, per direction.",
		}, []string{"backend", "direction"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vipd_proxy_refused_total",
			Help: "Client connections reset at once: no_backend (none healthy or all dials failed) or max_conns.",
		}, []string{"reason"}),
	}
	m.refused.WithLabelValues(reasonNoBackend)
	m.refused.WithLabelValues(reasonMaxConns)
	if reg != nil {
		reg.MustRegister(m.conns, m.active, m.bytes, m.dialErrors, m.copyErrors, m.refused)
	}
	return m
}

// backendMetrics are one backend's resolved children, looked up once per backend instead of per
// connection. The zero value (nil Metrics) records nothing.
type backendMetrics struct {
	conns, dialErrors      prometheus.Counter
	bytesUp, bytesDown     prometheus.Counter
	copyErrUp, copyErrDown prometheus.Counter
	active                 prometheus.Gauge
}

func (m *Metrics) forBackend(addr string) backendMetrics {
	if m == nil {
		return backendMetrics{}
	}
	return backendMetrics{
		conns:       m.conns.WithLabelValues(addr),
		dialErrors:  m.dialErrors.WithLabelValues(addr),
		bytesUp:     m.bytes.WithLabelValues(addr, "upstream"),
		bytesDown:   m.bytes.WithLabelValues(addr, "downstream"),
		copyErrUp:   m.copyErrors.WithLabelValues(addr, "upstream"),
		copyErrDown: m.copyErrors.WithLabelValues(addr, "downstream"),
		active:      m.active.WithLabelValues(addr),
	}
}

func (m *Metrics) refusedInc(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
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
